/*
 * chat.js — the chat page (/): nickname, rooms, messages, members, typing,
 * direct messages. The connection (reconnects, rejoins, missed messages)
 * is switchboard.js's job; this file only draws.
 *
 * Everything a user or the server wrote reaches the page as text nodes
 * (h() below), never as HTML.
 */
(function () {
  'use strict';

  var NICK_RE = /^[A-Za-z0-9_-]{1,32}$/;
  var GROUP_MS = 5 * 60 * 1000; // consecutive messages closer than this share a header
  var ROOMS_POLL_MS = 5000;
  var MAX_ITEMS = 2000; // per conversation

  var $ = function (id) {
    return document.getElementById(id);
  };

  // h('li', {class: 'x', dataset: {id: 1}}, 'text', child): an element whose
  // string children become text nodes.
  function h(tag, props) {
    var el = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) {
        var v = props[k];
        if (v === undefined || v === null || v === false) return;
        if (k === 'class') el.className = v;
        else if (k === 'dataset') Object.assign(el.dataset, v);
        else if (k === 'style') Object.keys(v).forEach(function (p) {
          el.style.setProperty(p, v[p]);
        });
        else if (k.slice(0, 2) === 'on') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === undefined || c === null || c === false) continue;
      el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function hue(name) {
    var x = 0;
    for (var i = 0; i < name.length; i++) x = (x * 31 + name.charCodeAt(i)) >>> 0;
    return x % 360;
  }

  function avatar(name, size) {
    return h('span', { class: 'avatar ' + (size || ''), style: { '--hue': String(hue(name)) },
      'aria-hidden': 'true' }, (name || '?').charAt(0));
  }

  function clock(ts) {
    var d = new Date(ts);
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  /* ---- state ------------------------------------------------------------ */

  var sb = new Switchboard();
  window.switchboardChat = { client: sb }; // for the console

  var me = null; // our nickname once in
  var convs = new Map(); // key -> conversation
  var current = null; // key of the conversation on screen
  var serverRooms = []; // [{name, members, ...}] from the last rooms()
  var roomOrder = []; // joined rooms, in the order they were joined
  var wasConnected = false;

  function roomKey(name) {
    return 'room:' + name;
  }

  function dmKey(nick) {
    return 'dm:' + nick;
  }

  function conv(key) {
    var c = convs.get(key);
    if (!c) {
      var isRoom = key.slice(0, 5) === 'room:';
      var name = key.slice(isRoom ? 5 : 3);
      c = {
        key: key,
        kind: isRoom ? 'room' : 'dm',
        name: name,
        list: h('ol', { class: 'conv', dataset: { conv: key } }),
        unread: 0,
        maxId: 0,
        count: null, // members (rooms)
        stick: true, // keep scrolled to the bottom
        scrollTop: 0,
      };
      c.list.appendChild(h('li', { class: 'conv-empty' }, isRoom
        ? 'This is the start of #' + name + '. Say hello!'
        : 'Your direct messages with ' + name + '. Only the two of you see them.'));
      convs.set(key, c);
    }
    return c;
  }

  function isOwn(m) {
    return (sb.userId && m.from === sb.userId) || (me !== null && m.nickname === me);
  }

  /* ---- connection status ----------------------------------------------- */

  var retryAt = 0;
  var statusTimer = null;

  function statusText(s) {
    if (s.state === 'connected') return 'Connected';
    if (s.state === 'connecting') return 'Connecting…';
    if (s.state === 'closed') return 'Offline';
    var left = Math.ceil((retryAt - Date.now()) / 1000);
    return !s.trying && left > 0 ? 'Reconnecting in ' + left + ' s…' : 'Reconnecting…';
  }

  function showStatus(s) {
    ['status', 'login-status'].forEach(function (id) {
      var el = $(id);
      el.dataset.state = s.state;
      el.textContent = statusText(s);
    });
    var reconnecting = s.state === 'reconnecting';
    $('me-status').textContent = s.state === 'connected' ? 'online' : 'offline';
    $('me-status').classList.toggle('off', s.state !== 'connected');
    $('banner').hidden = !reconnecting || !me;
    if (reconnecting) {
      $('banner-text').textContent = s.trying
        ? 'Connection lost. Reconnecting now…'
        : 'Connection lost. ' + statusText(s).replace('Reconnecting', 'Trying again');
    }
  }

  sb.on('status', function (s) {
    clearInterval(statusTimer);
    if (s.retryAt) retryAt = s.retryAt;
    showStatus(s);
    if (s.state === 'reconnecting' && !s.trying) {
      statusTimer = setInterval(function () {
        showStatus(s);
      }, 1000);
    }
    if (s.state === 'reconnecting' && wasConnected && me) {
      wasConnected = false;
      roomOrder.forEach(function (r) {
        addNotice(conv(roomKey(r)), 'Connection lost — reconnecting…', 'bad');
      });
    }
    if (s.state === 'connected') wasConnected = true;
    $('composer').classList.toggle('offline', s.state !== 'connected');
  });

  $('retry-now').addEventListener('click', function () {
    sb.reconnectNow();
  });

  sb.on('ready', function (e) {
    if (e.reconnected && me) {
      roomOrder.forEach(function (r) {
        addNotice(conv(roomKey(r)), 'Reconnected', '');
      });
    }
    refreshRooms();
  });

  /* ---- messages --------------------------------------------------------- */

  function messageItem(m) {
    var own = isOwn(m);
    var nick = m.nickname || m.from || '?';
    var body = h('div', { class: 'body' },
      h('div', { class: 'meta' },
        h('span', { class: 'nick', style: { color: 'hsl(' + hue(nick) + ' 45% 42%)' } }, nick),
        own ? h('span', { class: 'you' }, 'you') : null,
        h('time', { datetime: m.timestamp, title: new Date(m.timestamp).toLocaleString() },
          clock(m.timestamp))));
    if (typeof m.content === 'string') body.appendChild(h('div', { class: 'text' }, m.content));
    if (m.data !== undefined) body.appendChild(h('code', { class: 'data' }, JSON.stringify(m.data)));
    return h('li', {
      class: 'msg' + (own ? ' own' : ''),
      dataset: { id: m.id === undefined ? '' : String(m.id), from: nick, ts: m.timestamp || '' },
    }, avatar(nick), body);
  }

  function isNearBottom() {
    var el = $('messages');
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  function scrollToBottom() {
    var el = $('messages');
    el.scrollTop = el.scrollHeight;
  }

  // Adds an item at the end of a conversation, grouping consecutive messages
  // of one sender.
  function append(c, li) {
    var onScreen = c.key === current;
    var stick = onScreen ? isNearBottom() : c.stick;
    var prev = c.list.lastElementChild;
    if (li.classList.contains('msg') && prev && prev.classList.contains('msg') &&
        prev.dataset.from === li.dataset.from &&
        Date.parse(li.dataset.ts) - Date.parse(prev.dataset.ts) < GROUP_MS) {
      li.classList.add('cont');
    }
    c.list.appendChild(li);
    // A long session keeps the last MAX_ITEMS items on the page.
    while (c.list.children.length > MAX_ITEMS) c.list.firstElementChild.remove();
    if (onScreen && stick) scrollToBottom();
    else if (!onScreen) c.stick = stick;
  }

  // Room messages go in id order: normally at the end; a missed message
  // that arrives after newer ones (paging after a long outage) goes before
  // the first newer one.
  function addRoomMessage(c, m, info) {
    var li = messageItem(m);
    if (m.id > c.maxId) {
      c.maxId = m.id;
      append(c, li);
    } else {
      var items = c.list.querySelectorAll('.msg[data-id]');
      var before = null;
      for (var i = 0; i < items.length && !before; i++) {
        if (Number(items[i].dataset.id) > m.id) before = items[i];
      }
      c.list.insertBefore(li, before);
    }
    if (info && info.how !== 'history' && !isOwn(m)) markUnread(c);
  }

  function addNotice(c, text, kind) {
    append(c, h('li', { class: 'notice ' + (kind || '') }, h('span', null, text)));
  }

  function markUnread(c) {
    if (c.key === current) return;
    c.unread++;
    renderSidebar();
  }

  sb.on('message', function (m, info) {
    addRoomMessage(conv(roomKey(info.room)), m, info);
  });

  sb.on('user_joined', function (m) {
    var c = conv(roomKey(m.room));
    c.count = m.user_count;
    if (m.user_id !== sb.userId) {
      addNotice(c, m.nickname + ' joined · ' + plural(m.user_count, 'member') + ' here');
    }
    renderSidebar();
    renderHeader();
  });

  sb.on('user_left', function (m) {
    if (!convs.has(roomKey(m.room))) return;
    var c = conv(roomKey(m.room));
    c.count = m.user_count;
    if (m.user_id !== sb.userId) {
      addNotice(c, m.nickname + ' left · ' + plural(m.user_count, 'member') + ' here');
    }
    renderSidebar();
    renderHeader();
  });

  function plural(n, word) {
    return n + ' ' + word + (n === 1 ? '' : 's');
  }

  sb.on('users', function (e) {
    if (current === roomKey(e.room)) {
      renderUsers();
      renderHeader();
    }
  });

  sb.on('typing', function (e) {
    if (current === roomKey(e.room)) {
      renderTyping();
      renderUsers();
    }
  });

  sb.on('direct', function (m) {
    var peer = sb.directPeer(m);
    var c = conv(dmKey(peer.nickname));
    append(c, messageItem(m));
    if (!isOwn(m)) markUnread(c);
    renderSidebar();
  });

  sb.on('broadcast', function (m) {
    var item = h('li', { class: 'announcement', role: 'note' },
      h('span', { class: 'label' }, 'Announcement from ' + (m.nickname || 'server') + ' · ' +
        clock(m.timestamp)),
      h('div', { class: 'text' }, typeof m.content === 'string' ? m.content : JSON.stringify(m.data)));
    if (current) append(conv(current), item);
    else toast('Announcement: ' + (m.content || ''));
  });

  sb.on('server_shutdown', function (m) {
    if (current) addNotice(conv(current), (m.message || 'The server is shutting down') + '.', 'bad');
  });

  sb.on('error', function (m) {
    toast(m.error || m.code);
  });

  sb.on('left', function (e) {
    var key = roomKey(e.room);
    roomOrder = roomOrder.filter(function (r) {
      return r !== e.room;
    });
    convs.delete(key);
    if (current === key) switchTo(roomOrder.length ? roomKey(roomOrder[0]) : null);
    renderSidebar();
  });

  /* ---- rendering -------------------------------------------------------- */

  function renderSidebar() {
    var list = $('room-list');
    list.textContent = '';
    var counts = new Map(serverRooms.map(function (r) {
      return [r.name, r.members];
    }));
    var names = roomOrder.slice();
    serverRooms.map(function (r) {
      return r.name;
    }).sort().forEach(function (n) {
      if (names.indexOf(n) < 0) names.push(n);
    });
    names.forEach(function (name) {
      var joined = roomOrder.indexOf(name) >= 0;
      var c = joined ? conv(roomKey(name)) : null;
      var count = c && c.count !== null ? c.count : counts.get(name);
      var item = h('button', {
        type: 'button',
        class: 'side-item' + (joined ? '' : ' not-joined') + (c && c.unread ? ' unread' : ''),
        'aria-current': current === roomKey(name) ? 'true' : null,
        dataset: { room: name },
        title: joined ? 'Open #' + name : 'Join #' + name,
        onclick: function () {
          openRoom(name);
        },
      }, h('span', { class: 'hash' }, '#'), h('span', { class: 'name' }, name));
      if (c && c.unread) item.appendChild(h('span', { class: 'badge unread-count' }, String(c.unread)));
      else if (count !== undefined) {
        item.appendChild(h('span', { class: 'count' + (count ? '' : ' none'),
          title: plural(count, 'member') + ' online' }, String(count)));
      }
      if (!joined) item.appendChild(h('span', { class: 'join-hint' }, 'join'));
      list.appendChild(h('li', null, item));
    });

    var dms = $('dm-list');
    dms.textContent = '';
    var any = false;
    convs.forEach(function (c) {
      if (c.kind !== 'dm') return;
      any = true;
      var item = h('button', {
        type: 'button',
        class: 'side-item' + (c.unread ? ' unread' : ''),
        'aria-current': current === c.key ? 'true' : null,
        dataset: { dm: c.name },
        onclick: function () {
          switchTo(c.key);
        },
      }, avatar(c.name, 'tiny'), h('span', { class: 'name' }, c.name));
      if (c.unread) item.appendChild(h('span', { class: 'badge unread-count' }, String(c.unread)));
      dms.appendChild(h('li', null, item));
    });
    $('dm-empty').hidden = any;

    var total = 0;
    convs.forEach(function (c) {
      total += c.unread;
    });
    $('menu-unread').hidden = total === 0;
    document.title = (total ? '(' + total + ') ' : '') + 'Switchboard';
  }

  function renderHeader() {
    var c = current && convs.get(current);
    if (!c) {
      $('conv-title').textContent = 'No room open';
      $('conv-sub').textContent = 'Join a room from the list.';
      $('leave-room').hidden = true;
      return;
    }
    if (c.kind === 'room') {
      var members = sb.members(c.name).length;
      $('conv-title').textContent = '# ' + c.name;
      $('conv-sub').textContent = plural(members, 'member') + ' online';
      $('leave-room').hidden = false;
      $('input').placeholder = 'Message #' + c.name;
    } else {
      $('conv-title').textContent = '@ ' + c.name;
      $('conv-sub').textContent = 'Direct message';
      $('leave-room').hidden = true;
      $('input').placeholder = 'Message ' + c.name;
    }
  }

  function renderUsers() {
    var c = current && convs.get(current);
    var list = $('user-list');
    list.textContent = '';
    if (!c) {
      $('user-count').textContent = '';
      return;
    }
    var users;
    if (c.kind === 'room') users = sb.members(c.name);
    else users = [{ nickname: me, status: 'online' }, { nickname: c.name, status: 'online' }];
    var typing = c.kind === 'room' ? sb.typingUsers(c.name).map(function (t) {
      return t.user_id;
    }) : [];
    users.sort(function (a, b) {
      if (a.nickname === me) return -1;
      if (b.nickname === me) return 1;
      return a.nickname.localeCompare(b.nickname);
    });
    $('user-count').textContent = '· ' + users.length;
    users.forEach(function (u) {
      var self = u.nickname === me;
      var isTyping = typing.indexOf(u.user_id) >= 0;
      var status = isTyping ? 'typing' : u.status || 'online';
      list.appendChild(h('li', null, h('button', {
        type: 'button',
        class: 'user',
        dataset: { nick: u.nickname, status: status },
        title: self ? 'You' : 'Send ' + u.nickname + ' a direct message',
        onclick: self ? null : function () {
          openDm(u.nickname);
        },
      }, avatar(u.nickname, 'small'), h('span', { class: 'presence-dot', 'aria-hidden': 'true' }),
      h('span', { class: 'who' }, h('span', { class: 'nick' }, u.nickname + (self ? ' (you)' : '')),
        h('span', { class: 'state' }, isTyping ? 'typing…' : status)))));
    });
  }

  function renderTyping() {
    var c = current && convs.get(current);
    var names = c && c.kind === 'room' ? sb.typingUsers(c.name).map(function (t) {
      return t.nickname;
    }) : [];
    var text = '';
    if (names.length === 1) text = names[0] + ' is typing…';
    else if (names.length === 2) text = names[0] + ' and ' + names[1] + ' are typing…';
    else if (names.length > 2) text = names.length + ' people are typing…';
    $('typing').textContent = text;
  }

  function switchTo(key) {
    var old = current && convs.get(current);
    if (old) {
      old.scrollTop = $('messages').scrollTop;
      old.stick = isNearBottom();
    }
    current = key;
    var box = $('messages');
    box.textContent = '';
    var c = key ? conv(key) : null;
    if (c) {
      c.unread = 0;
      box.appendChild(c.list);
      if (c.stick) scrollToBottom();
      else box.scrollTop = c.scrollTop;
    }
    $('composer').hidden = !c;
    renderSidebar();
    renderHeader();
    renderUsers();
    renderTyping();
    closeDrawers();
  }

  /* ---- actions ---------------------------------------------------------- */

  function openRoom(name) {
    if (roomOrder.indexOf(name) >= 0) {
      switchTo(roomKey(name));
      return Promise.resolve();
    }
    return sb.join(name).then(function () {
      if (roomOrder.indexOf(name) < 0) roomOrder.push(name);
      switchTo(roomKey(name));
      refreshRooms();
    });
  }

  function openDm(nick) {
    conv(dmKey(nick));
    switchTo(dmKey(nick));
    $('input').focus();
  }

  function refreshRooms() {
    if (!me || sb.state !== 'connected') return;
    sb.rooms().then(function (rooms) {
      serverRooms = rooms;
      renderSidebar();
    }, function () {});
  }
  setInterval(refreshRooms, ROOMS_POLL_MS);

  function toast(text) {
    var t = h('div', { class: 'toast', role: 'status' }, text);
    $('toasts').appendChild(t);
    setTimeout(function () {
      t.remove();
    }, 6000);
  }

  /* ---- the nickname step ------------------------------------------------ */

  var saved = null;
  try {
    saved = localStorage.getItem('switchboard.nickname');
  } catch (e) { /* storage off */ }
  if (saved) $('nick').value = saved;
  $('nick').focus();

  // The hint checks what the server checks, as you type; the server has
  // the last word when you submit.
  $('nick').addEventListener('input', function () {
    var v = $('nick').value.trim();
    $('nick-hint').classList.toggle('bad', v !== '' && !NICK_RE.test(v));
    $('login-error').hidden = true;
  });

  $('login-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var nick = $('nick').value.trim();
    var err = $('login-error');
    if (!nick) {
      err.textContent = 'Type a nickname first.';
      err.hidden = false;
      return;
    }
    $('login-submit').disabled = true;
    err.hidden = true;
    me = nick; // so that history marks our own messages
    var start = 'general';
    sb.join(start, { nickname: nick }).catch(function (x) {
      // A server with a fixed list of rooms may have no #general: start in
      // its first room instead.
      if (x.code !== 'room_not_found') throw x;
      return sb.rooms().then(function (rooms) {
        if (!rooms.length) throw x;
        start = rooms[0].name;
        return sb.join(start, { nickname: nick });
      });
    }).then(function () {
      try {
        localStorage.setItem('switchboard.nickname', nick);
      } catch (x) { /* storage off */ }
      roomOrder.push(start);
      enterChat(start);
    }, function (x) {
      me = null;
      convs.delete(roomKey(start));
      err.textContent = x.code === 'not_connected'
        ? 'Cannot reach the server right now; it will be tried again.'
        : x.message; // the server's own words
      err.hidden = false;
      $('nick').focus();
      $('nick').select();
    }).finally(function () {
      $('login-submit').disabled = false;
    });
  });

  function enterChat(room) {
    $('login').hidden = true;
    $('app').hidden = false;
    $('me-nick').textContent = me;
    $('me-avatar').replaceWith(Object.assign(avatar(me, 'small'), { id: 'me-avatar' }));
    switchTo(roomKey(room));
    refreshRooms();
    wasConnected = sb.state === 'connected';
    $('input').focus();
  }

  /* ---- the composer ----------------------------------------------------- */

  var input = $('input');

  function autosize() {
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 160) + 'px';
  }

  input.addEventListener('input', function () {
    autosize();
    $('composer-error').hidden = true;
    var c = current && convs.get(current);
    if (c && c.kind === 'room') {
      if (input.value) sb.typing(c.name);
      else sb.typing(c.name, false);
    }
  });

  input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });

  $('composer').addEventListener('submit', function (e) {
    e.preventDefault();
    var c = current && convs.get(current);
    var text = input.value;
    if (!c || !text.trim()) return;
    input.value = '';
    autosize();
    var sent = c.kind === 'room' ? sb.send(c.name, text) : sb.direct(c.name, text);
    sent.catch(function (x) {
      if (!input.value) {
        input.value = text; // give the text back to fix or resend
        autosize();
      }
      var box = $('composer-error');
      box.textContent = c.kind === 'dm' && x.code === 'unknown_user'
        ? c.name + ' is not online, so the message was not sent.'
        : 'Not sent: ' + x.message;
      box.hidden = false;
    });
  });

  $('leave-room').addEventListener('click', function () {
    var c = current && convs.get(current);
    if (!c || c.kind !== 'room') return;
    sb.leave(c.name).then(refreshRooms, function (x) {
      toast('Could not leave: ' + x.message);
    });
  });

  /* ---- the room dialog -------------------------------------------------- */

  var dialog = $('room-dialog');

  $('new-room').addEventListener('click', function () {
    var dl = $('room-suggestions');
    dl.textContent = '';
    serverRooms.forEach(function (r) {
      dl.appendChild(h('option', { value: r.name }));
    });
    $('room-error').hidden = true;
    $('room-name').value = '';
    dialog.showModal();
    $('room-name').focus();
  });

  $('room-cancel').addEventListener('click', function () {
    dialog.close();
  });

  $('room-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var name = $('room-name').value.trim();
    var err = $('room-error');
    if (!name) {
      err.textContent = 'Type a room name first.';
      err.hidden = false;
      return;
    }
    $('room-join').disabled = true;
    openRoom(name).then(function () {
      dialog.close();
    }, function (x) {
      err.textContent = x.message; // the server's own words
      err.hidden = false;
    }).finally(function () {
      $('room-join').disabled = false;
    });
  });

  /* ---- drawers (phones) and keys --------------------------------------- */

  var narrow = window.matchMedia('(max-width: 1100px)');

  function closeDrawers() {
    $('sidebar').classList.remove('open');
    $('userpanel').classList.remove('open');
    $('scrim').hidden = true;
  }

  $('open-sidebar').addEventListener('click', function () {
    $('sidebar').classList.add('open');
    $('scrim').hidden = false;
  });

  $('toggle-users').addEventListener('click', function () {
    if (narrow.matches) {
      $('userpanel').classList.add('open');
      $('scrim').hidden = false;
    } else {
      $('app').classList.toggle('no-users');
    }
  });

  $('close-sidebar').addEventListener('click', closeDrawers);
  $('close-users').addEventListener('click', closeDrawers);
  $('scrim').addEventListener('click', closeDrawers);

  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && !dialog.open) closeDrawers();
  });

  $('messages').addEventListener('scroll', function () {
    var c = current && convs.get(current);
    if (c) c.stick = isNearBottom();
  });
})();
