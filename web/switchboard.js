/*
 * switchboard.js — a small, dependency-free client for Switchboard's JSON
 * protocol at /ws (docs/protocol.md). How to use it: docs/client.md.
 *
 *   <script src="/switchboard.js"></script>
 *   const sb = new Switchboard({ nickname: 'alice' });
 *   sb.on('message', (m) => console.log(m.nickname, m.content));
 *   await sb.join('general');
 *   await sb.send('general', 'Hi!');
 *
 * What it does for you:
 * - connects, and reconnects by itself with exponential backoff and jitter
 *   when the connection drops (server restart, network loss, or a dead
 *   connection found by the heartbeat);
 * - after a reconnect, rejoins every room with `since` = the last message id
 *   it saw there, so it gets exactly the messages it missed (paging past the
 *   server's 500-per-answer limit), and drops any message it has already
 *   delivered: no gaps, no duplicates;
 * - pairs each request with its answer (the server answers a connection's
 *   messages in order), so join(), send(), users(), rooms()... return
 *   promises that reject with the server's error (err.code, err.message);
 * - keeps each joined room's member list and who is typing there.
 *
 * Runs in browsers and in any runtime with a WHATWG WebSocket.
 */
(function (root) {
  'use strict';

  var HISTORY_PAGE = 500; // the most messages one history answer holds

  /** An Error with the server's error code in err.code. */
  function SwitchboardError(code, message) {
    var e = new Error(message);
    e.name = 'SwitchboardError';
    e.code = code;
    return e;
  }

  function defaultUrl() {
    var loc = root.location;
    if (!loc || !/^https?:$/.test(loc.protocol)) return 'ws://127.0.0.1:8080/ws';
    return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/ws';
  }

  /**
   * new Switchboard(options)
   *   url         WebSocket URL (default: /ws on the page's own host)
   *   nickname    sent with the first join of every connection
   *   autoConnect connect at once (default true)
   *   minDelay    first reconnect delay in ms (default 500)
   *   maxDelay    longest reconnect delay in ms (default 10000)
   *   heartbeat   ms of silence before a ping (default 25000; 0: off)
   *   timeout     ms a request waits for the connection and its answer
   *               (default 10000)
   *   WebSocket   a WebSocket class, for runtimes without a global one
   */
  function Switchboard(options) {
    options = options || {};
    this.url = options.url || defaultUrl();
    this.nickname = options.nickname || null;
    this.minDelay = options.minDelay || 500;
    this.maxDelay = options.maxDelay || 10000;
    this.heartbeat = options.heartbeat === undefined ? 25000 : options.heartbeat;
    this.timeout = options.timeout || 10000;
    this.WebSocket = options.WebSocket || root.WebSocket;

    // idle -> connecting -> connected <-> reconnecting; closed after close().
    this.state = 'idle';
    this.userId = null; // ours, from the welcome
    this.connectionId = null;
    this.attempt = 0; // failed attempts since the last good connection

    this._handlers = {};
    this._ws = null;
    this._live = false; // the socket is open and the welcome arrived
    this._everConnected = false;
    this._closedByUser = false;
    this._pending = []; // sent requests waiting for their answer, oldest first
    this._waiting = []; // requests made while (re)connecting
    this._rooms = new Map(); // name -> room state (see _room)
    this._retryTimer = null;
    this._beatTimer = null;
    this._typingOut = new Map(); // room -> {sentAt, stopTimer}
    this._nickSent = false; // has this connection claimed the nickname?
    this._names = new Map(); // user id -> nickname, for direct messages

    var self = this;
    // Back online: try now rather than at the end of a long backoff.
    this._onOnline = function () {
      self._retryNow();
    };
    if (options.autoConnect !== false) this.connect();
  }

  var P = Switchboard.prototype;

  /* ---- events ---------------------------------------------------------- */

  /**
   * on(type, fn) subscribes; returns a function that unsubscribes.
   * Types: status, welcome, ready, message, history, joined, left,
   * user_joined, user_left, presence, users, typing, direct, broadcast,
   * system, server_shutdown, error (errors no request was waiting for) and
   * raw (every message from the server, before anything else).
   */
  P.on = function (type, fn) {
    (this._handlers[type] || (this._handlers[type] = [])).push(fn);
    var self = this;
    return function () {
      self.off(type, fn);
    };
  };

  P.off = function (type, fn) {
    var list = this._handlers[type];
    if (list) {
      this._handlers[type] = list.filter(function (f) {
        return f !== fn;
      });
    }
  };

  P._emit = function (type, a, b) {
    var list = this._handlers[type];
    if (!list) return;
    list.slice().forEach(function (fn) {
      try {
        fn(a, b);
      } catch (e) {
        // A listener's bug must not break the client's bookkeeping; it
        // still shows up in the console.
        setTimeout(function () {
          throw e;
        });
      }
    });
  };

  /* ---- connection ------------------------------------------------------ */

  /** Opens the connection (again, after close()). */
  P.connect = function () {
    if (this._ws || this._retryTimer) return;
    this._closedByUser = false;
    if (root.addEventListener) root.addEventListener('online', this._onOnline);
    this._open();
  };

  /** Closes for good: no reconnect; requests in flight reject. */
  P.close = function () {
    this._closedByUser = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (root.removeEventListener) root.removeEventListener('online', this._onOnline);
    var ws = this._ws;
    this._ws = null;
    if (ws) ws.close(1000);
    this._lost('the client closed the connection');
    this._failWaiting('the client closed the connection');
    this._setState('closed', {});
  };

  P._setState = function (state, info) {
    this.state = state;
    info.state = state;
    info.attempt = this.attempt;
    this._emit('status', info);
  };

  P._open = function () {
    var self = this;
    var ws;
    this._setState(this._everConnected ? 'reconnecting' : 'connecting', { trying: true });
    try {
      ws = new this.WebSocket(this.url);
    } catch (e) {
      this._scheduleRetry(String((e && e.message) || e));
      return;
    }
    this._ws = ws;
    ws.onmessage = function (ev) {
      if (self._ws === ws) self._receive(ev.data);
    };
    ws.onclose = function (ev) {
      if (self._ws !== ws) return;
      self._ws = null;
      var why = ev.code === 1001 ? 'the server restarted' : 'the connection closed';
      self._lost(why);
      self._scheduleRetry(why);
    };
    ws.onerror = function () {
      // onclose follows and does the work.
    };
  };

  // Forgets what belonged to the connection that is gone.
  P._lost = function (why) {
    this._live = false;
    this._nickSent = false;
    clearTimeout(this._beatTimer);
    var pending = this._pending;
    this._pending = [];
    pending.forEach(function (p) {
      clearTimeout(p.timer);
      p.reject(SwitchboardError('disconnected', 'the connection was lost: ' + why));
    });
    this._rooms.forEach(function (r) {
      r.ready = false;
      r.catchingUp = false;
    });
    this._typingOut.forEach(function (t) {
      clearTimeout(t.stopTimer);
    });
    this._typingOut.clear();
  };

  /**
   * The delay before the next attempt: exponential (minDelay doubled per
   * failed attempt, at most maxDelay) with jitter (a random point in the
   * upper half), so that after a server restart the clients do not all
   * come back at the same instant.
   */
  P.nextDelay = function () {
    var cap = Math.min(this.maxDelay, this.minDelay * Math.pow(2, this.attempt));
    return Math.round(cap / 2 + (Math.random() * cap) / 2);
  };

  P._scheduleRetry = function (reason) {
    if (this._closedByUser) return;
    var delay = this.nextDelay();
    this.attempt++;
    var self = this;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(function () {
      self._retryTimer = null;
      self._open();
    }, delay);
    this._setState('reconnecting', { delay: delay, retryAt: Date.now() + delay, reason: reason });
  };

  /** Tries to reconnect now instead of at the end of the current delay. */
  P._retryNow = function () {
    if (!this._retryTimer) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._open();
  };
  P.reconnectNow = P._retryNow;

  // Drops a connection that cannot be used (silent, or rejoining failed)
  // and reconnects.
  P._drop = function (reason) {
    var ws = this._ws;
    if (!ws) return;
    this._ws = null;
    try {
      ws.close(4000, reason.slice(0, 100));
    } catch (e) {
      /* already closing */
    }
    this._lost(reason);
    this._scheduleRetry(reason);
  };

  // The heartbeat: after `heartbeat` ms without a word from the server, a
  // ping; no answer within `timeout` drops the connection. A TCP connection
  // that died without a close (a laptop lid, lost Wi-Fi) is found this way.
  P._armHeartbeat = function () {
    if (!this.heartbeat || !this._live) return;
    clearTimeout(this._beatTimer);
    var self = this;
    this._beatTimer = setTimeout(function () {
      self._send({ type: 'ping' }, isType('pong')).catch(function (e) {
        if (e.code === 'timeout') self._drop('no answer to a ping');
      });
    }, this.heartbeat);
  };

  /* ---- requests -------------------------------------------------------- */

  function isType(type) {
    return function (m) {
      return m.type === type;
    };
  }

  // Sends msg on the live connection and returns a promise for its answer:
  // the first message for which match(m) holds while this request is the
  // oldest one waiting, or the first error then.
  P._send = function (msg, match) {
    var self = this;
    return new Promise(function (resolve, reject) {
      if (!self._live) {
        reject(SwitchboardError('not_connected', 'not connected to the server'));
        return;
      }
      var p = { match: match, resolve: resolve, reject: reject };
      p.timer = setTimeout(function () {
        var i = self._pending.indexOf(p);
        if (i >= 0) self._pending.splice(i, 1);
        reject(SwitchboardError('timeout', 'the server did not answer ' + msg.type + ' in time'));
      }, self.timeout);
      self._pending.push(p);
      try {
        self._ws.send(JSON.stringify(msg));
      } catch (e) {
        // The socket is closing; its close event rejects what is pending.
      }
    });
  };

  // A request of the caller: sent now when connected; made while
  // (re)connecting, sent once the client is connected and has rejoined its
  // rooms, if that happens within `timeout` ms.
  P._request = function (msg, match) {
    if (this.state === 'connected') return this._send(msg, match);
    if (this.state === 'closed' || this.state === 'idle') {
      return Promise.reject(SwitchboardError('not_connected', 'not connected: call connect() first'));
    }
    var self = this;
    return new Promise(function (resolve, reject) {
      var w = { msg: msg, match: match, resolve: resolve, reject: reject };
      w.timer = setTimeout(function () {
        self._waiting.splice(self._waiting.indexOf(w), 1);
        reject(SwitchboardError('not_connected',
          'not connected to the server (' + self.state + '); try again'));
      }, self.timeout);
      self._waiting.push(w);
    });
  };

  P._flushWaiting = function () {
    var waiting = this._waiting;
    this._waiting = [];
    var self = this;
    waiting.forEach(function (w) {
      clearTimeout(w.timer);
      self._send(w.msg, w.match).then(w.resolve, w.reject);
    });
  };

  P._failWaiting = function (why) {
    var waiting = this._waiting;
    this._waiting = [];
    waiting.forEach(function (w) {
      clearTimeout(w.timer);
      w.reject(SwitchboardError('not_connected', why));
    });
  };

  // Sends what has no answer (typing); false when not connected.
  P._post = function (msg) {
    if (this.state !== 'connected') return false;
    try {
      this._ws.send(JSON.stringify(msg));
    } catch (e) {
      return false; // closing: nothing to tell anyone anymore
    }
    return true;
  };

  P._room = function (name) {
    var r = this._rooms.get(name);
    if (!r) {
      r = {
        name: name,
        joined: false, // joined, so rejoined after a reconnect
        ready: false, // joined on this connection
        lastId: 0, // every message up to this id has been delivered
        maxId: 0, // the highest id delivered
        seen: new Set(), // ids above lastId delivered (out of order while catching up)
        catchingUp: false, // reading missed messages page by page
        users: new Map(), // user id -> {user_id, nickname, status}
        usersTimer: null, // a pending member-list refresh
        typing: new Map(), // user id -> {nickname, timer}
      };
      this._rooms.set(name, r);
    }
    return r;
  };

  /** The rooms joined (they are rejoined after a reconnect). */
  P.joinedRooms = function () {
    var out = [];
    this._rooms.forEach(function (r) {
      if (r.joined) out.push(r.name);
    });
    return out;
  };

  /** The users in a joined room: [{user_id, nickname, status}]. */
  P.members = function (room) {
    var r = this._rooms.get(room);
    return r ? Array.from(r.users.values()) : [];
  };

  /** Who is typing in a joined room: [{user_id, nickname}]. */
  P.typingUsers = function (room) {
    var r = this._rooms.get(room);
    var out = [];
    if (r) {
      r.typing.forEach(function (t, id) {
        out.push({ user_id: id, nickname: t.nickname });
      });
    }
    return out;
  };

  /**
   * join(room, {nickname}) joins a room (the server creates it on first
   * join). Resolves with {room, messages}: the room's latest messages, which
   * also arrive as `message` events. Rejects with the server's error
   * (err.code: invalid_nickname, nickname_taken, invalid_room,
   * room_not_found...); a refused join changes nothing. A nickname given
   * here is kept for later joins and reconnects.
   */
  P.join = function (room, opts) {
    var nick = (opts && opts.nickname) || null;
    var self = this;
    var msg = { type: 'join', room: room };
    if (nick) msg.nickname = nick;
    else if (this.nickname) msg.nickname = this.nickname;
    return this._request(msg, historyOf(room)).then(function (h) {
      if (msg.nickname) {
        self.nickname = msg.nickname;
        self._nickSent = true;
      }
      return self._joined(room, h.messages || [], false);
    });
  };

  function historyOf(room) {
    return function (m) {
      return m.type === 'history' && m.room === room;
    };
  }

  // Rejoins after a reconnect, asking for what came after lastId.
  P._rejoin = function (room) {
    var r = this._room(room);
    var msg = { type: 'join', room: room, since: r.lastId };
    var claim = !this._nickSent && this.nickname;
    if (claim) msg.nickname = this.nickname;
    var self = this;
    return this._send(msg, historyOf(room)).then(function (h) {
      if (claim) self._nickSent = true;
      return self._joined(room, h.messages || [], true);
    });
  };

  P._joined = function (room, messages, rejoin) {
    var r = this._room(room);
    if (!r.joined) r.users.clear();
    r.joined = true;
    r.ready = true;
    this._receiveHistory(r, messages, rejoin);
    this.users(room).catch(function () {});
    this._emit('joined', { room: room, rejoined: rejoin });
    return { room: room, messages: messages };
  };

  /** leave(room): resolves once the server confirms. */
  P.leave = function (room) {
    var self = this;
    return this._request({ type: 'leave', room: room }, function (m) {
      return m.type === 'user_left' && m.room === room && m.user_id === self.userId;
    }).then(function (m) {
      var r = self._rooms.get(room);
      if (r) {
        r.typing.forEach(function (t) {
          clearTimeout(t.timer);
        });
        clearTimeout(r.usersTimer);
        self._rooms.delete(room);
      }
      self._emit('left', { room: room });
      return m;
    });
  };

  /**
   * send(room, content, {data, metadata}) publishes a message to a joined
   * room. Resolves with the message as delivered (with its id).
   */
  P.send = function (room, content, extra) {
    var self = this;
    var msg = { type: 'message', room: room };
    if (content !== undefined && content !== null) msg.content = content;
    extra = extra || {};
    if (extra.data !== undefined) msg.data = extra.data;
    if (extra.metadata !== undefined) msg.metadata = extra.metadata;
    this._stopTyping(room, false); // a message ends typing for the others
    return this._request(msg, function (m) {
      return m.type === 'message' && m.room === room && m.from === self.userId &&
        (msg.content === undefined || m.content === msg.content);
    });
  };

  /** direct(to, content): to is the nickname or user id of someone online. */
  P.direct = function (to, content) {
    var self = this;
    return this._request({ type: 'direct', to: to, content: content }, function (m) {
      var mine = m.type === 'direct' && m.from === self.userId && m.content === content;
      // The echo names the target by id: remember whose it is before the
      // `direct` event goes out.
      if (mine && m.to !== self.userId) self._names.set(m.to, to);
      return mine;
    });
  };

  /** The other party of a direct message: {user_id, nickname}. */
  P.directPeer = function (m) {
    if (m.from !== this.userId) return { user_id: m.from, nickname: m.nickname };
    return { user_id: m.to, nickname: this._names.get(m.to) || this._nameOf(m.to) || m.to };
  };

  P._nameOf = function (userId) {
    var name = null;
    this._rooms.forEach(function (r) {
      var u = r.users.get(userId);
      if (u) name = u.nickname;
    });
    return name;
  };

  /** broadcast(content): to every client of the server. */
  P.broadcast = function (content) {
    var self = this;
    return this._request({ type: 'broadcast', content: content }, function (m) {
      return m.type === 'broadcast' && m.from === self.userId;
    });
  };

  /**
   * typing(room) says "I am typing": call it on every keystroke. It sends
   * at most one notice every 3 s, and "stopped" after 4 s without a call.
   * typing(room, false) says "stopped" now; send() ends typing too.
   */
  P.typing = function (room, on) {
    if (on === false) {
      this._stopTyping(room, true);
      return;
    }
    var r = this._rooms.get(room);
    if (!r || !r.ready) return;
    var t = this._typingOut.get(room);
    if (!t) {
      t = { sentAt: 0, stopTimer: null };
      this._typingOut.set(room, t);
    }
    var now = Date.now();
    if (now - t.sentAt > 3000 && this._post({ type: 'typing', room: room, typing: true })) {
      t.sentAt = now;
    }
    var self = this;
    clearTimeout(t.stopTimer);
    t.stopTimer = setTimeout(function () {
      self._stopTyping(room, true);
    }, 4000);
  };

  P._stopTyping = function (room, tell) {
    var t = this._typingOut.get(room);
    if (!t) return;
    clearTimeout(t.stopTimer);
    this._typingOut.delete(room);
    var r = this._rooms.get(room);
    if (tell && r && r.ready) this._post({ type: 'typing', room: room, typing: false });
  };

  /** users(room): resolves with [{user_id, nickname, status}]. */
  P.users = function (room) {
    var self = this;
    return this._send({ type: 'users', room: room }, function (m) {
      return m.type === 'users' && m.room === room;
    }).then(function (m) {
      var r = self._rooms.get(room);
      if (r && r.joined) {
        r.users.clear();
        m.users.forEach(function (u) {
          r.users.set(u.user_id, u);
        });
        self._emit('users', { room: room, users: m.users });
      }
      return m.users;
    });
  };

  /** rooms(): resolves with [{name, members, messages, last_activity}]. */
  P.rooms = function () {
    return this._request({ type: 'rooms' }, isType('rooms')).then(function (m) {
      return m.rooms;
    });
  };

  /** history(room, {since, limit}): resolves with stored messages, oldest first. */
  P.history = function (room, opts) {
    var msg = { type: 'history', room: room };
    opts = opts || {};
    if (opts.since !== undefined) msg.since = opts.since;
    if (opts.limit !== undefined) msg.limit = opts.limit;
    return this._request(msg, historyOf(room)).then(function (m) {
      return m.messages;
    });
  };

  /** ping(): resolves with the round trip in ms. */
  P.ping = function () {
    var t0 = Date.now();
    return this._request({ type: 'ping' }, isType('pong')).then(function () {
      return Date.now() - t0;
    });
  };

  /* ---- receiving ------------------------------------------------------- */

  P._receive = function (text) {
    var m;
    try {
      m = JSON.parse(text);
    } catch (e) {
      return; // the server sends JSON only
    }
    if (!m || typeof m.type !== 'string') return;
    this._armHeartbeat();
    this._emit('raw', m);

    var head = this._pending[0];
    var answered = null;
    if (head && (m.type === 'error' || head.match(m))) {
      this._pending.shift();
      clearTimeout(head.timer);
      answered = head;
    }

    switch (m.type) {
      case 'welcome':
        this._welcome(m);
        break;
      case 'message':
        this._liveMessage(m);
        break;
      case 'user_joined':
      case 'user_left':
        this._membership(m);
        break;
      case 'presence':
        this._presence(m);
        break;
      case 'typing':
        this._typingIn(m);
        break;
      case 'error':
        if (!answered) this._emit('error', m);
        break;
      case 'history':
      case 'users':
      case 'rooms':
      case 'pong':
        break; // answers: their request's promise has them
      default:
        this._emit(m.type, m); // direct, broadcast, system, server_shutdown...
    }

    if (answered) {
      if (m.type === 'error') answered.reject(SwitchboardError(m.code, m.error));
      else answered.resolve(m);
    }
  };

  // A new connection: rejoin every room, the first one alone (it claims
  // the nickname again), then the others.
  P._welcome = function (m) {
    var self = this;
    var reconnected = this._everConnected;
    this.userId = m.user_id;
    this.connectionId = m.connection_id;
    this._live = true;
    this._armHeartbeat();
    this._emit('welcome', m);
    var rooms = this.joinedRooms();
    var rejoin = rooms.length
      ? this._rejoin(rooms[0]).then(function () {
        return Promise.all(rooms.slice(1).map(function (name) {
          return self._rejoin(name);
        }));
      })
      : Promise.resolve();
    rejoin.then(function () {
      self._connected(reconnected);
    }, function (e) {
      if (e.code === 'disconnected') return; // the next connection retries
      // nickname_taken here means the server has not yet noticed that our
      // previous connection is dead (that takes up to a minute): retry.
      self._drop('could not rejoin (' + e.message + ')');
    });
  };

  P._connected = function (reconnected) {
    this.attempt = 0;
    this._everConnected = true;
    this._setState('connected', { reconnected: reconnected });
    this._emit('ready', { reconnected: reconnected, rooms: this.joinedRooms() });
    this._flushWaiting();
  };

  // Every room message comes through here, whichever way it came: each is
  // delivered once.
  P._deliver = function (r, m, how) {
    if (typeof m.id !== 'number' || m.id <= r.lastId || r.seen.has(m.id)) return;
    r.seen.add(m.id);
    if (m.id > r.maxId) r.maxId = m.id;
    this._clearTyping(r, m.from);
    this._emit('message', m, { room: r.name, replay: how !== 'live', how: how });
  };

  // Moves the watermark; ids at or below it need no entry in `seen`.
  P._advance = function (r, id) {
    if (id <= r.lastId) return;
    r.lastId = id;
    if (r.seen.size > 256) {
      r.seen.forEach(function (x) {
        if (x <= id) r.seen.delete(x);
      });
    }
  };

  P._liveMessage = function (m) {
    var r = this._rooms.get(m.room);
    if (!r || !r.joined) return;
    this._deliver(r, m, 'live');
    // While catching up, older messages are still to come: the watermark
    // waits for them.
    if (!r.catchingUp) this._advance(r, m.id);
  };

  // The history answering a join. A first join gets the room's latest
  // messages; a rejoin exactly those after lastId, up to a page; more pages
  // follow when the page was full.
  P._receiveHistory = function (r, messages, rejoin) {
    var self = this;
    var how = rejoin ? 'missed' : 'history';
    var top = r.lastId;
    messages.forEach(function (m) {
      self._deliver(r, m, how);
      if (m.id > top) top = m.id;
    });
    this._emit('history', { room: r.name, messages: messages, rejoin: rejoin });
    if (rejoin && messages.length >= HISTORY_PAGE) {
      r.catchingUp = true;
      this._advance(r, top);
      this._catchUp(r);
    } else {
      this._advance(r, Math.max(top, r.maxId));
    }
  };

  P._catchUp = function (r) {
    var self = this;
    this._send({ type: 'history', room: r.name, since: r.lastId, limit: HISTORY_PAGE },
      historyOf(r.name)).then(function (h) {
      var messages = h.messages || [];
      messages.forEach(function (m) {
        self._deliver(r, m, 'missed');
      });
      if (messages.length >= HISTORY_PAGE) {
        self._advance(r, messages[messages.length - 1].id);
        self._catchUp(r);
      } else {
        r.catchingUp = false;
        self._advance(r, r.maxId);
      }
    }, function () {
      // The connection went: the next rejoin starts again from lastId.
    });
  };

  P._membership = function (m) {
    var r = this._rooms.get(m.room);
    if (!r || !r.joined) return;
    if (m.type === 'user_joined') {
      r.users.set(m.user_id, { user_id: m.user_id, nickname: m.nickname, status: 'online' });
      this._emit('users', { room: r.name, users: Array.from(r.users.values()) });
    } else if (m.user_id !== this.userId) {
      this._clearTyping(r, m.user_id);
      r.users.delete(m.user_id);
      this._emit('users', { room: r.name, users: Array.from(r.users.values()) });
      // user_count counts connections: more of them than users means
      // someone is here twice, maybe the one who left. Ask the server, at
      // most once every 2 s per room, rather than on every leave (in a
      // big room that would cost the square of its size).
      if (m.user_count > r.users.size) this._refreshUsers(r);
    }
    this._emit(m.type, m);
  };

  P._refreshUsers = function (r) {
    if (r.usersTimer) return;
    var self = this;
    r.usersTimer = setTimeout(function () {
      r.usersTimer = null;
      if (r.joined && self._live) self.users(r.name).catch(function () {});
    }, 2000);
  };

  P._presence = function (m) {
    var self = this;
    this._rooms.forEach(function (r) {
      var u = r.users.get(m.user_id);
      if (u && u.status !== m.status) {
        u.status = m.status;
        self._emit('users', { room: r.name, users: Array.from(r.users.values()) });
      }
    });
    this._emit('presence', m);
  };

  // Someone's typing notice. It clears itself after 6 s without news, in
  // case the "stopped" notice never comes (the typist closed the tab).
  P._typingIn = function (m) {
    var r = this._rooms.get(m.room);
    if (!r || !r.joined || m.user_id === this.userId) return;
    if (m.typing === false) {
      this._clearTyping(r, m.user_id);
      return;
    }
    var t = r.typing.get(m.user_id);
    if (t) clearTimeout(t.timer);
    var self = this;
    r.typing.set(m.user_id, {
      nickname: m.nickname,
      timer: setTimeout(function () {
        self._clearTyping(r, m.user_id);
      }, 6000),
    });
    this._emit('typing', { room: r.name, user_id: m.user_id, nickname: m.nickname, typing: true });
  };

  P._clearTyping = function (r, userId) {
    var t = r.typing.get(userId);
    if (!t) return;
    clearTimeout(t.timer);
    r.typing.delete(userId);
    this._emit('typing', { room: r.name, user_id: userId, nickname: t.nickname, typing: false });
  };

  Switchboard.Error = SwitchboardError;

  if (typeof module === 'object' && module.exports) module.exports = Switchboard;
  else root.Switchboard = Switchboard;
})(typeof globalThis !== 'undefined' ? globalThis : this);
