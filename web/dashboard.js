/*
 * dashboard.js — the dashboard (/dashboard): live figures from /stats every
 * second, charts of the last five minutes drawn on canvas, the room table
 * (the protocol's `rooms`, through switchboard.js) and the announcement
 * form (POST /api/broadcast). Text from the server is set as text, never as
 * HTML.
 */
(function () {
  'use strict';

  var POLL_MS = 1000;
  var ROOMS_MS = 2000;
  var WINDOW_S = 300; // the charts show the last five minutes

  var $ = function (id) {
    return document.getElementById(id);
  };

  function h(tag, props) {
    var el = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) {
        if (props[k] === undefined || props[k] === null) return;
        if (k === 'class') el.className = props[k];
        else el.setAttribute(k, String(props[k]));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === undefined || c === null) continue;
      el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /* ---- formatting ------------------------------------------------------- */

  function int(n) {
    return Math.round(n).toLocaleString('en-US');
  }

  function rate(n) {
    return n < 10 ? n.toFixed(1) : int(n);
  }

  function bytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function duration(s) {
    var d = Math.floor(s / 86400);
    var hr = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60);
    if (d) return d + ' d ' + hr + ' h';
    if (hr) return hr + ' h ' + String(m).padStart(2, '0') + ' m';
    if (m) return m + ' m ' + String(s % 60).padStart(2, '0') + ' s';
    return s + ' s';
  }

  function ago(ts) {
    var t = Date.parse(ts);
    if (isNaN(t)) return '—';
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 5) return 'just now';
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return new Date(t).toLocaleDateString();
  }

  function setStat(id, value, text) {
    var el = $(id);
    el.dataset.value = String(value);
    el.textContent = text;
  }

  /* ---- the live connection ---------------------------------------------- */

  var sb = new Switchboard();
  window.switchboardDashboard = { client: sb }; // for the console

  sb.on('status', function (s) {
    var el = $('status');
    el.dataset.state = s.state;
    el.textContent = { connected: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…',
      closed: 'Offline' }[s.state] || s.state;
    if (s.state === 'connected') refreshRooms();
  });

  sb.on('broadcast', function (m) {
    var feed = $('feed');
    var empty = feed.querySelector('.empty');
    if (empty) empty.remove();
    feed.insertBefore(h('li', null,
      h('time', { datetime: m.timestamp }, new Date(m.timestamp).toLocaleTimeString()),
      (m.nickname || 'server') + ': ',
      typeof m.content === 'string' ? m.content : JSON.stringify(m.data)), feed.firstChild);
    while (feed.children.length > 8) feed.lastChild.remove();
  });

  /* ---- the API key (only when the server asks for it) ------------------- */

  var apiKey = '';
  try {
    apiKey = sessionStorage.getItem('switchboard.apiKey') || '';
  } catch (e) { /* storage off */ }

  function authHeaders() {
    return apiKey ? { Authorization: 'Bearer ' + apiKey } : {};
  }

  function askForKey() {
    $('key-row').hidden = false;
    $('bc-key').value = apiKey;
  }

  $('bc-key').addEventListener('change', function () {
    apiKey = $('bc-key').value.trim();
    try {
      sessionStorage.setItem('switchboard.apiKey', apiKey);
    } catch (e) { /* storage off */ }
  });

  /* ---- figures ----------------------------------------------------------- */

  var samples = []; // {t (ms), connections, inRate, outRate}

  function showStats(s) {
    setStat('stat-connections', s.connections, int(s.connections));
    $('sub-connections').textContent = int(s.total_connections) + ' opened since start';
    setStat('stat-users', s.unique_users, int(s.unique_users));
    setStat('stat-rooms', s.rooms, int(s.rooms));
    setStat('stat-in-rate', s.messages_received_per_second, rate(s.messages_received_per_second));
    $('sub-in').textContent = int(s.messages_received) + ' received in total';
    setStat('stat-out-rate', s.messages_sent_per_second, rate(s.messages_sent_per_second));
    $('sub-out').textContent = int(s.messages_sent) + ' sent in total';
    var bw = s.bytes_received_per_second + s.bytes_sent_per_second;
    setStat('stat-bytes', bw, bytes(bw) + '/s');
    $('sub-bytes').textContent = bytes(s.bytes_received) + ' in, ' + bytes(s.bytes_sent) + ' out';
    setStat('stat-uptime', s.uptime_seconds, duration(s.uptime_seconds));
    $('sub-uptime').textContent = 'since ' +
      new Date(Date.now() - s.uptime_seconds * 1000).toLocaleString([], {
        dateStyle: 'short', timeStyle: 'short' });
    setStat('stat-slow', s.slow_consumers, int(s.slow_consumers));
    $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();

    var now = Date.now();
    samples.push({ t: now, connections: s.connections, inRate: s.messages_received_per_second,
      outRate: s.messages_sent_per_second });
    while (samples.length && samples[0].t < now - WINDOW_S * 1000) samples.shift();
    drawCharts();
  }

  function poll() {
    return fetch('/stats', { cache: 'no-store', headers: authHeaders() }).then(function (res) {
      if (res.status === 401) {
        askForKey();
        throw new Error('this server protects its statistics: enter its API key in the form below');
      }
      if (!res.ok) throw new Error('the server answered ' + res.status);
      return res.json();
    }).then(function (s) {
      $('stats-error').hidden = true;
      showStats(s);
    }).catch(function (e) {
      var box = $('stats-error');
      box.textContent = 'Cannot read the figures: ' + e.message + '.';
      box.hidden = false;
    });
  }

  // One request at a time, one a second.
  (function loop() {
    poll().then(function () {
      setTimeout(loop, POLL_MS);
    });
  })();

  /* ---- charts ------------------------------------------------------------ */

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // The smallest "round" grid step (1, 2, 2.5 or 5 x 10^n; whole numbers
  // for counts) at or above v.
  function niceStep(v, integer) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      var s = steps[i] * p;
      if (s >= v && (!integer || s === Math.round(s))) return s;
    }
    return 10 * p;
  }

  // Draws series ([{values: [{t, v}], color}]) over the last WINDOW_S
  // seconds, with a grid and labelled axes.
  function drawChart(canvas, series, opts) {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth;
    var ht = canvas.clientHeight;
    if (!w || !ht) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(ht * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(ht * dpr);
    }
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, ht);

    var left = 44;
    var right = 8;
    var top = 8;
    var bottom = 22;
    var pw = w - left - right;
    var ph = ht - top - bottom;
    var max = opts.minMax;
    series.forEach(function (s) {
      s.values.forEach(function (p) {
        if (p.v > max) max = p.v;
      });
    });
    var step = Math.max(niceStep(max / 4, opts.integer), opts.integer ? 1 : 0);
    max = 4 * step;

    var muted = cssVar('--muted');
    var grid = cssVar('--border');
    ctx.font = '11px ' + cssVar('--font');
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    for (var i = 0; i <= 4; i++) {
      var y = Math.round(top + ph - (ph * i) / 4) + 0.5;
      ctx.strokeStyle = grid;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + pw, y);
      ctx.stroke();
      var label = step * i;
      ctx.fillStyle = muted;
      ctx.fillText(step === Math.round(step) ? int(label) : label.toFixed(1), left - 6, y);
    }
    // Time labels as far apart as the width allows.
    var span = opts.span;
    var tick = [10, 15, 30, 60, 120, 300].filter(function (t) {
      return (pw * t) / span >= 56;
    })[0] || span;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'alphabetic';
    for (var back = 0; back <= span; back += tick) {
      var x = left + pw - (pw * back) / span;
      ctx.fillStyle = muted;
      ctx.fillText(back === 0 ? 'now' : tick < 60 ? '−' + back + ' s' : '−' + back / 60 + ' min',
        Math.min(Math.max(x, left + 18), left + pw - 12), ht - 6);
    }

    var now = Date.now();
    series.forEach(function (s) {
      if (!s.values.length) return;
      var pts = s.values.map(function (p) {
        return [left + pw - (pw * (now - p.t)) / (span * 1000), top + ph - (ph * p.v) / max];
      });
      ctx.beginPath();
      pts.forEach(function (p, j) {
        if (j) ctx.lineTo(p[0], p[1]);
        else ctx.moveTo(p[0], p[1]);
      });
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.stroke();
      ctx.lineTo(pts[pts.length - 1][0], top + ph);
      ctx.lineTo(pts[0][0], top + ph);
      ctx.closePath();
      ctx.globalAlpha = 0.12;
      ctx.fillStyle = s.color;
      ctx.fill();
      ctx.globalAlpha = 1;
      var last = pts[pts.length - 1];
      ctx.beginPath();
      ctx.arc(last[0], last[1], 3, 0, 2 * Math.PI);
      ctx.fill();
    });
    canvas.dataset.points = String(series[0].values.length);
  }

  // The charts span the time the page has been watching, from one minute
  // up to WINDOW_S.
  function drawCharts() {
    var watched = samples.length ? (Date.now() - samples[0].t) / 1000 : 0;
    var span = Math.min(WINDOW_S, Math.max(60, Math.ceil(watched / 60) * 60));
    var minutes = span / 60;
    $('chart-span').textContent = 'last ' + (minutes === 1 ? 'minute' : minutes + ' minutes');
    drawChart($('chart-connections'), [{
      color: cssVar('--accent'),
      values: samples.map(function (s) {
        return { t: s.t, v: s.connections };
      }),
    }], { minMax: 4, integer: true, span: span });
    drawChart($('chart-rates'), [{
      color: cssVar('--accent'),
      values: samples.map(function (s) {
        return { t: s.t, v: s.inRate };
      }),
    }, {
      color: cssVar('--accent-2'),
      values: samples.map(function (s) {
        return { t: s.t, v: s.outRate };
      }),
    }], { minMax: 4, span: span });
  }

  if (window.ResizeObserver) new ResizeObserver(drawCharts).observe($('chart-rates'));

  /* ---- rooms --------------------------------------------------------------- */

  function showRooms(rooms) {
    rooms.sort(function (a, b) {
      return b.members - a.members || a.name.localeCompare(b.name);
    });
    var body = $('rooms-body');
    body.textContent = '';
    if (!rooms.length) {
      body.appendChild(h('tr', { class: 'empty' }, h('td', { colspan: 4 }, 'No rooms yet.')));
    }
    rooms.forEach(function (r) {
      body.appendChild(h('tr', { 'data-room': r.name },
        h('td', { class: 'room' }, r.name),
        h('td', { class: 'num' }, int(r.members)),
        h('td', { class: 'num' }, int(r.messages)),
        h('td', { title: r.last_activity ? new Date(r.last_activity).toLocaleString() : null },
          r.last_activity ? ago(r.last_activity) : '—')));
    });
    $('rooms-note').textContent = rooms.length === 1 ? '1 room' : rooms.length + ' rooms';

    // The broadcast form can target any of them.
    var select = $('bc-room');
    var chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    rooms.forEach(function (r) {
      select.appendChild(h('option', { value: r.name }, '#' + r.name + ' (stored in its history)'));
    });
    select.value = rooms.some(function (r) {
      return r.name === chosen;
    }) ? chosen : '';
  }

  function refreshRooms() {
    if (sb.state !== 'connected') return;
    sb.rooms().then(showRooms, function () {});
  }
  setInterval(refreshRooms, ROOMS_MS);

  /* ---- announcements --------------------------------------------------- */

  $('broadcast-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var result = $('bc-result');
    var message = $('bc-message').value.trim();
    if (!message) {
      result.textContent = 'Type a message first.';
      result.className = 'bc-result bad';
      result.hidden = false;
      return;
    }
    if (!$('key-row').hidden) {
      apiKey = $('bc-key').value.trim();
      try {
        sessionStorage.setItem('switchboard.apiKey', apiKey);
      } catch (x) { /* storage off */ }
    }
    var body = { message: message };
    if ($('bc-room').value) body.room = $('bc-room').value;
    $('bc-send').disabled = true;
    var headers = Object.assign({ 'Content-Type': 'application/json' }, authHeaders());
    fetch('/api/broadcast', { method: 'POST', headers: headers, body: JSON.stringify(body) })
      .then(function (res) {
        return res.json().catch(function () {
          return {};
        }).then(function (j) {
          if (res.status === 401) {
            askForKey();
            $('bc-key').focus();
            throw new Error(apiKey ? 'the API key is not right; check it and send again'
              : 'this server asks for its API key: type it above and send again');
          }
          if (!res.ok) throw new Error(j.error || 'the server answered ' + res.status);
          return j;
        });
      })
      .then(function (j) {
        result.textContent = 'Sent to ' + j.delivered + (j.delivered === 1 ? ' connection.' : ' connections.');
        result.className = 'bc-result';
        $('bc-message').value = '';
      }, function (x) {
        result.textContent = 'Not sent: ' + x.message + '.';
        result.className = 'bc-result bad';
      })
      .finally(function () {
        result.hidden = false;
        $('bc-send').disabled = false;
      });
  });

  $('bc-message').addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('broadcast-form').requestSubmit();
  });
})();
