// The web chat: one user talking to a bot through botwatch. Everything shown comes
// from the server (what the user wrote too), each message once by its id; nothing a
// message holds is ever treated as HTML.

const bot = decodeURIComponent(location.pathname.split('/')[2] || '');
const key = `botwatch.chat.${bot}`;

/** The user's id: made once, at random, and kept in this browser. */
function userId() {
  let id = localStorage.getItem(key);
  if (!id || !/^wc-[0-9a-f]{32}$/.test(id)) {
    id = `wc-${crypto.randomUUID().replaceAll('-', '')}`;
    localStorage.setItem(key, id);
  }
  return id;
}

const user = userId();
const list = document.getElementById('messages');
const status = document.getElementById('status');
const error = document.getElementById('error');
const form = document.getElementById('composer');
const input = document.getElementById('text');
document.getElementById('title').textContent = `Chat with ${bot}`;
document.title = `Chat with ${bot}`;

const shown = new Map();

/** http(s) addresses only. */
function safe(url) {
  try {
    const u = new URL(url, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  for (const c of children) if (c) e.append(c);
  return e;
}

function card(c) {
  const box = el('div', { className: 'card' });
  const image = c.image && safe(c.image);
  if (image) box.append(el('img', { src: image, alt: '' }));
  box.append(el('strong', { textContent: c.title }));
  if (c.subtitle) box.append(el('span', { textContent: c.subtitle }));
  if (c.buttons?.length) {
    const row = el('div', { className: 'buttons' });
    for (const b of c.buttons) {
      const url = b.url && safe(b.url);
      row.append(url
        ? el('a', { className: 'button', href: url, target: '_blank', rel: 'noopener noreferrer', textContent: b.title })
        : el('button', { type: 'button', textContent: b.title, onclick: () => say(b.payload || b.title) }));
    }
    box.append(row);
  }
  return box;
}

function render(m) {
  if (shown.has(m.id)) return;
  const item = el('li', { className: `msg ${m.direction}` });
  item.dataset.id = m.id;
  item.dataset.ts = m.ts;
  if (m.direction === 'out') {
    const who = m.sender?.kind === 'operator' ? 'Operator' : 'Bot';
    item.append(el('span', { className: 'who', textContent: who }));
    item.dataset.sender = m.sender?.kind || 'bot';
  }
  if (m.text) item.append(el('span', { className: 'text', textContent: m.text }));
  for (const a of m.attachments || []) {
    if (a.type === 'card') item.append(card(a));
    else {
      const url = safe(a.url);
      if (url && a.type === 'image') item.append(el('img', { src: url, alt: a.name || 'image' }));
      else if (url) item.append(el('a', { className: 'file', href: url, download: a.name || '', textContent: a.name || 'file' }));
    }
  }
  item.append(el('time', { dateTime: m.ts, textContent: new Date(m.ts).toLocaleTimeString() }));
  shown.set(m.id, item);
  // In time order, even when a message arrives late.
  const after = [...list.children].find((li) => li.dataset.ts > m.ts);
  list.insertBefore(item, after || null);
  list.scrollTop = list.scrollHeight;
}

let socket = null;
let wait = 1000;

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const name = localStorage.getItem(`${key}.name`) || '';
  const query = new URLSearchParams({ user, ...(name ? { name } : {}) });
  socket = new WebSocket(`${proto}//${location.host}/chat/${encodeURIComponent(bot)}/live?${query}`);
  socket.onopen = () => {
    status.textContent = 'Online';
    wait = 1000;
  };
  socket.onmessage = (e) => {
    const frame = JSON.parse(e.data);
    if (frame.messages) frame.messages.forEach(render);
    if (frame.message) render(frame.message);
    if (frame.error) show(frame.error);
  };
  socket.onclose = () => {
    status.textContent = 'Reconnecting…';
    setTimeout(connect, wait);
    wait = Math.min(wait * 2, 10000);
  };
}

function show(message) {
  error.textContent = message;
  error.hidden = !message;
}

function say(text) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    show('Not connected yet: try again in a moment.');
    return false;
  }
  show('');
  socket.send(JSON.stringify({ text }));
  return true;
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (text && say(text)) input.value = '';
});

connect();
