// soak.test.mjs — the short version of the soak under faults (bench/soak.mjs,
// `make soak` runs the long one): a few hundred well-behaved chat clients
// while others churn (closing properly or dropping TCP), stop reading, and
// send garbage, against the sanitizer build. Every check of the driver must
// hold: each message of a well-behaved client reached every well-behaved
// member of its room exactly once and in order, ids strictly increasing; no
// well-behaved client was disconnected; each misbehaving client was closed
// with its documented code; connections and memory came back once the
// misbehaving clients were gone; and the server exits cleanly (ASan: no
// leak, no error).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatSummary, GARBAGE_KIND_COUNT, runSoak, serverArgs } from '../../bench/soak.mjs';
import { tempDir } from './lib/hub.mjs';
import { start } from './lib/server.mjs';

const BUSY_SIZE = 50000;

// ASan keeps freed memory in a quarantine of up to 256 MiB (to catch use
// after free), so the heap would only grow during a run and memory could
// never come back to a baseline. A 4 MiB quarantine still catches a use of
// recently freed memory; freed pages go back to the system every second.
function asanOptions() {
  const base = process.env.ASAN_OPTIONS || 'detect_leaks=1:abort_on_error=0';
  return `${base}:quarantine_size_mb=4:allocator_release_to_os_interval_ms=1000`;
}

test('soak: chat, churn, slow consumers and garbage at once; every check of bench/soak.mjs holds',
  { timeout: 200000 }, async (t) => {
    const dir = tempDir('sb-soak-');
    const server = await start(['--data-dir', dir.dir, ...serverArgs(BUSY_SIZE)],
      { env: { ASAN_OPTIONS: asanOptions() } });
    let r;
    try {
      r = await runSoak({
        port: server.port,
        pid: server.pid,
        duration: 38,      // warm-up 8 s, faults 10 s, recovery at most 20 s
        warmup: 8,         // fills each room's history cache (100 messages)
        recover: 20,
        settle: 0,
        clients: 300,
        rooms: 10,
        rate: 0.5,
        busyMembers: 4,
        busyPublishers: 2,
        busyRate: 20,
        busySize: BUSY_SIZE,
        churners: 20,
        garbage: 4,
        slow: 2,
        log: (s) => t.diagnostic(s),
      });
    } finally {
      await server.stop(); // exit 0: no leak, no sanitizer report
      dir.remove();
    }
    const summary = formatSummary(r);
    for (const line of summary.split('\n')) t.diagnostic(line);
    assert.ok(r.pass, `the soak failed:\n${summary}`);
    // Each fault happened, so that a pass means something.
    const c = r.counts;
    assert.ok(c.sent > 0 && c.busySent > 0, 'well-behaved clients sent messages');
    assert.equal(c.verified, c.expected, 'every expected delivery was checked');
    assert.ok(c.expected >= c.sent, 'deliveries were expected');
    assert.ok(c.slowOpened >= 2 && c.slowClosed === c.slowOpened,
      `slow consumers were cut (${c.slowClosed} of ${c.slowOpened})`);
    assert.ok(c.garbageCycles >= GARBAGE_KIND_COUNT, `every kind of garbage was sent ` +
      `(${c.garbageCycles} connections for ${GARBAGE_KIND_COUNT} kinds)`);
    assert.ok(r.closes['churner: close 1000'] && r.closes['churner: TCP dropped'],
      'churners both closed properly and dropped TCP');
    assert.ok(r.mem.peakKiB > r.mem.baselineKiB, 'the faults took memory (peak over the baseline)');
  });
