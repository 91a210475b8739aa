// The browser chat, on p2pmesh's JavaScript API (./pkg/p2pmesh.js, built by `cargo xtask web`).
//
// It speaks chat-cli's format (apps/chat-cli/src/lib.rs): every payload is a JSON string
// {"kind", "name", "text"} with kind hello (broadcast when the first link comes up), here (the
// direct answer to a hello), chat (a broadcast line, or a direct message) or bye (broadcast
// before leaving), on the topic "chat".
//
// Names in the DHT, as chat-cli: when the first link comes up the page publishes its name as the
// record "name:" + name whose value is its peer id (a string); a /dm to a name not heard on the
// topic gets that record and sends to its publisher; leaving removes it. /put <key> <value> and
// /get <key> publish and look up records (string values).
//
// URL parameters: ?name=&room= pre-fill the form (both present: join at once); ?server= the
// signaling URL (default: this page's origin, ws://<host>/), or several separated by commas (the
// servers of one cluster: the page moves to the next when its server goes away).
//
// Elements tests read: #self (data-peer-id); #log > li (class "line", data-kind = chat | dm |
// system, data-from = the sender's id, "" for system lines, data-name, and .from / .text
// children); #peers > li (data-peer-id); #topology line.link (data-peer-id), circle.contact
// (data-peer-id); #status (data-state = info | ok | error).

const TOPIC = "chat";
/** What a chat's name record is called in the DHT: this, then the name. */
const NAME_PREFIX = "name:";
/** Lines kept in #log (older ones are removed). */
const MAX_LOG = 500;
/** Lines typed before the first link, sent when it comes up (chat-cli's MAX_QUEUED). */
const MAX_QUEUED = 100;
/** DHT contacts drawn; the rest are counted. */
const MAX_CONTACTS_DRAWN = 48;
/** Display names remembered (the oldest is forgotten first). */
const MAX_NAMES = 10000;
/** How often the DHT contacts are re-read (they change without events). */
const CONTACTS_REFRESH_MS = 2000;

const $ = (id) => document.getElementById(id);
const ui = {
  self: $("self"), status: $("status"), joinForm: $("join"), name: $("name"), room: $("room"),
  joinButton: $("join-button"), leaveButton: $("leave-button"), log: $("log"),
  sendForm: $("send"), message: $("message"), sendButton: $("send-button"),
  peers: $("peers"), peerCount: $("peer-count"), noPeers: $("no-peers"), topology: $("topology"),
};

const params = new URLSearchParams(location.search);
const serverUrls = (params.get("server") || "").split(",").map((u) => u.trim()).filter(Boolean);
const serverUrl = serverUrls[0] ||
  `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;

const state = {
  lib: null,          // the loaded module
  mesh: null,
  name: "",
  greeted: false,     // our hello went out (on the first link)
  published: false,   // our name is in the DHT (removed when leaving)
  queued: [],         // lines typed before any link
  names: new Map(),   // peer id -> display name
  linked: [],         // peer ids linked now
  contacts: [],       // DHT contacts
  refreshTimer: null,
};

// ---------------------------------------------------------------- status and errors

function setStatus(text, kind = "info") {
  ui.status.textContent = text;
  ui.status.dataset.state = kind;
}

function describe(err) {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  try { return JSON.stringify(err); } catch { return String(err); }
}

window.addEventListener("error", (e) => setStatus(`error: ${describe(e.error ?? e.message)}`, "error"));
window.addEventListener("unhandledrejection", (e) => setStatus(`error: ${describe(e.reason)}`, "error"));

// ---------------------------------------------------------------- the log

const short = (id) => String(id).slice(0, 8);
const display = (id) => state.names.get(id) ?? short(id);

function addLine(kind, { from = "", name = "", text = "", to = "" } = {}) {
  const li = document.createElement("li");
  li.className = `line ${kind}`;
  li.dataset.kind = kind;
  li.dataset.from = from;
  li.dataset.name = name;
  if (to) li.dataset.to = to;
  if (state.mesh && from === state.mesh.peerId) li.classList.add("mine");
  if (kind !== "system") {
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = kind === "dm" ? (to ? `→ ${display(to)}` : `${name} (direct)`) : name;
    who.title = from;
    li.append(who, " ");
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(body);
  const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  ui.log.append(li);
  while (ui.log.childElementCount > MAX_LOG) ui.log.firstElementChild.remove();
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
}

const system = (text) => addLine("system", { text });

// ---------------------------------------------------------------- the chat protocol

const payload = (kind, text = "") =>
  JSON.stringify(text ? { kind, name: state.name, text } : { kind, name: state.name });

function decode(data) {
  const text = typeof data === "string" ? data : new TextDecoder().decode(data);
  try {
    const value = JSON.parse(text);
    if (value && typeof value.kind === "string" && typeof value.name === "string") {
      return { kind: value.kind, name: value.name, text: typeof value.text === "string" ? value.text : "" };
    }
  } catch { /* not JSON: shown as text */ }
  return { raw: text };
}

async function broadcast(kind, text) {
  await state.mesh.sendBroadcast(TOPIC, payload(kind, text));
}

async function onMessage({ from, data, topic }) {
  const mesh = state.mesh;
  if (!mesh || from === mesh.peerId) return;
  const direct = topic === undefined || topic === null;
  if (!direct && topic !== TOPIC) return;
  const message = decode(data);
  if (message.raw !== undefined) {
    addLine(direct ? "dm" : "chat", { from, name: short(from), text: message.raw });
    return;
  }
  const known = state.names.has(from);
  state.names.delete(from);
  state.names.set(from, message.name);
  if (state.names.size > MAX_NAMES) state.names.delete(state.names.keys().next().value);
  switch (message.kind) {
    case "hello":
      if (!known) system(`${message.name} joined`);
      mesh.send(from, payload("here")).catch((err) =>
        console.debug("could not answer a hello", err));
      break;
    case "here":
      if (!known) system(`${message.name} is here`);
      break;
    case "bye":
      state.names.delete(from);
      system(`${message.name} left`);
      break;
    default:
      addLine(direct ? "dm" : "chat", { from, name: message.name, text: message.text });
  }
  renderPeers();
}

async function greetOnce() {
  if (state.greeted) return;
  state.greeted = true;
  publishName();
  await broadcast("hello");
  while (state.queued.length > 0) await broadcast("chat", state.queued.shift());
}

/** Publishes "name:" + our name → our peer id in the DHT (in the background); a put no node answered
 * (the only link went away meanwhile) is tried again, `retries` more times, 5 s apart. */
function publishName(retries = 5) {
  const mesh = state.mesh;
  const key = NAME_PREFIX + state.name;
  mesh.put(key, mesh.peerId).then(({ stored, asked }) => {
    state.published = true;
    system(`your name is published in the DHT (${key}, stored by ${stored} of ${asked} nodes)`);
  }, (err) => {
    if (err?.code === "DhtTimeout" && retries > 0 && state.mesh === mesh) {
      setTimeout(() => { if (state.mesh === mesh) publishName(retries - 1); }, 5000);
      return;
    }
    // Unless the node refused the command itself, it republishes the record later.
    state.published = !["KeyTooLarge", "ValueTooLarge", "EmptyValue", "Busy"].includes(err?.code);
    system(err?.reason === "OtherPublisher"
      ? `the name ${state.name} is another peer's in the DHT: a /dm ${state.name} from a peer that has not seen you reaches them`
      : `could not publish your name in the DHT: ${describe(err)}`);
  });
}

/** How long ago, from milliseconds: 42s, 3m12s, 2h5m. */
function ago(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor(s / 60) % 60}m`;
}

const shown = (value) => typeof value === "string" ? value
  : `0x${[...value].map((b) => b.toString(16).padStart(2, "0")).join("")}`;

// ---------------------------------------------------------------- commands

/** A peer id for a name, a full id, or an id prefix of 4+ characters; null when not exactly one. */
function resolve(who) {
  const byName = [...state.names].filter(([, name]) => name === who).map(([id]) => id);
  if (byName.length === 1) return byName[0];
  const prefix = who.toLowerCase();
  if (/^[0-9a-f]{40}$/.test(prefix)) return prefix;
  if (prefix.length < 4) return null;
  const known = new Set([...state.names.keys(), ...state.linked, ...state.contacts]);
  const byPrefix = [...known].filter((id) => id.startsWith(prefix));
  return byPrefix.length === 1 ? byPrefix[0] : null;
}

async function handleLine(line) {
  if (!line.trim()) return;
  const [command, ...restWords] = line.split(" ");
  const rest = restWords.join(" ");
  if (command === "/peers") {
    await refreshPeers();
    const linked = state.linked.map((p) => state.names.has(p) ? `${state.names.get(p)} (${short(p)})` : short(p));
    const known = [...state.names.values()].sort();
    system(linked.length === 0 && known.length === 0 ? "no peers yet"
      : `${linked.length} linked: ${linked.join(", ")}; ${known.length} known by name: ${known.join(", ")}`);
  } else if (command === "/dm") {
    const trimmed = rest.trimStart();
    const space = trimmed.indexOf(" ");
    const who = space < 0 ? trimmed : trimmed.slice(0, space);
    const text = space < 0 ? "" : trimmed.slice(space + 1);
    if (!who || !text.trim()) { system("usage: /dm <name or id prefix> <text>"); return; }
    let to = resolve(who);
    if (!to && who === state.name) { system(`${who} is you`); return; }
    if (!to) {
      system(`${who} not seen here: looking the name up in the DHT`);
      let record;
      try {
        record = await state.mesh.get(NAME_PREFIX + who);
      } catch (err) {
        system(`no peer called ${who} seen here, and the DHT: ${describe(err)}`);
        return;
      }
      if (!record) { system(`no peer called ${who}: not seen here, not in the DHT`); return; }
      to = record.publisher;
      if (to === state.mesh.peerId) { system(`${who} is you`); return; }
      if (!state.names.has(to)) state.names.set(to, who);
    }
    try {
      await state.mesh.send(to, payload("chat", text));
      addLine("dm", { from: state.mesh.peerId, name: state.name, text, to });
    } catch (err) {
      system(`could not send to ${display(to)}: ${describe(err)}`);
    }
  } else if (command === "/put") {
    const trimmed = rest.trimStart();
    const space = trimmed.indexOf(" ");
    const key = space < 0 ? trimmed : trimmed.slice(0, space);
    const value = space < 0 ? "" : trimmed.slice(space + 1);
    if (!key || !value) { system("usage: /put <key> <value>"); return; }
    try {
      const { stored, asked } = await state.mesh.put(key, value);
      system(`put ${key}: stored by ${stored} of ${asked} nodes`);
    } catch (err) {
      system(`put ${key} failed: ${describe(err)}`);
    }
  } else if (command === "/get") {
    const key = rest.trim();
    if (!key || key.includes(" ")) { system("usage: /get <key>"); return; }
    try {
      const record = await state.mesh.get(key);
      system(record
        ? `${key} = ${shown(record.value)} (publisher ${display(record.publisher)}, seq ${record.seq}, ${ago(record.ageMs)} old)`
        : `${key}: not found`);
    } catch (err) {
      system(`get ${key} failed: ${describe(err)}`);
    }
  } else if (command === "/help") {
    system("/peers, /dm <name or id prefix> <text> (a name not seen here is looked up in the DHT), " +
      "/put <key> <value>, /get <key>; other lines are sent to everyone");
  } else if (command.startsWith("/") && !command.startsWith("//")) {
    system(`unknown command ${command} (try /help)`);
  } else {
    addLine("chat", { from: state.mesh.peerId, name: state.name, text: line });
    if (state.greeted) {
      await broadcast("chat", line);
    } else if (state.queued.length < MAX_QUEUED) {
      state.queued.push(line);
      system("no peer linked yet: the line is sent when the first link comes up");
    } else {
      system("no peers yet and too many lines waiting: line dropped");
    }
  }
}

// ---------------------------------------------------------------- peers and the topology

async function refreshPeers() {
  const mesh = state.mesh;
  if (!mesh) return;
  const [linked, contacts] = await Promise.all([mesh.peers(), mesh.routingTable()]);
  if (mesh !== state.mesh) return;
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sortedLinked = [...linked].sort();
  const sortedContacts = [...contacts].sort();
  if (same(sortedLinked, state.linked) && same(sortedContacts, state.contacts)) return;
  state.linked = sortedLinked;
  state.contacts = sortedContacts;
  renderPeers();
}

function renderPeers() {
  const items = state.linked.map((id) => {
    const li = document.createElement("li");
    li.dataset.peerId = id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = state.names.get(id) ?? "(no name yet)";
    const code = document.createElement("code");
    code.textContent = short(id);
    code.title = id;
    li.append(name, " ", code);
    return li;
  });
  ui.peers.replaceChildren(...items);
  ui.peerCount.textContent = String(state.linked.length);
  ui.noPeers.hidden = state.linked.length > 0 || !state.mesh;
  renderTopology();
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Points on a circle of radius r, starting at the top; index i of n. */
function around(i, n, r, offset = 0) {
  const angle = -Math.PI / 2 + offset + (2 * Math.PI * i) / Math.max(n, 1);
  return [Math.round(r * Math.cos(angle) * 10) / 10, Math.round(r * Math.sin(angle) * 10) / 10];
}

function node(id, x, y, cls, r, label) {
  const g = svg("g", { class: `node ${cls}`, "data-peer-id": id });
  g.append(svg("title", {}, `${state.names.get(id) ?? ""} ${id}`.trim()));
  g.append(svg("circle", { class: cls, cx: x, cy: y, r, "data-peer-id": id }));
  if (label) {
    const below = y >= 0;
    g.append(svg("text", { x, y: below ? y + r + 11 : y - r - 5, "text-anchor": "middle" }, label));
  }
  return g;
}

function renderTopology() {
  const mesh = state.mesh;
  const layers = { links: svg("g", { class: "links" }), nodes: svg("g", { class: "nodes" }) };
  if (mesh) {
    const linked = state.linked;
    const linkedSet = new Set(linked);
    const others = state.contacts.filter((id) => !linkedSet.has(id));
    const drawn = others.slice(0, MAX_CONTACTS_DRAWN);
    drawn.forEach((id, i) => {
      const [x, y] = around(i, drawn.length, 145, Math.PI / Math.max(drawn.length, 1));
      layers.nodes.append(node(id, x, y, "contact", 4));
    });
    linked.forEach((id, i) => {
      const [x, y] = around(i, linked.length, 90);
      layers.links.append(svg("line", { class: "link", x1: 0, y1: 0, x2: x, y2: y, "data-peer-id": id }));
      layers.nodes.append(node(id, x, y, "peer", 9, state.names.get(id) ?? short(id)));
    });
    layers.nodes.append(node(mesh.peerId, 0, 0, "self", 14, state.name));
    const caption = `${linked.length} linked, ${state.contacts.length} DHT contacts` +
      (others.length > drawn.length ? ` (${others.length - drawn.length} not drawn)` : "");
    layers.nodes.append(svg("text", { class: "caption", x: 0, y: 166, "text-anchor": "middle" }, caption));
  } else {
    layers.nodes.append(svg("text", { class: "caption", x: 0, y: 0, "text-anchor": "middle" },
      "join a room to see the mesh"));
  }
  ui.topology.replaceChildren(layers.links, layers.nodes);
}

// ---------------------------------------------------------------- joining and leaving

function setJoined(joined) {
  ui.name.disabled = ui.room.disabled = joined;
  ui.joinButton.hidden = joined;
  ui.leaveButton.hidden = !joined;
  ui.message.disabled = ui.sendButton.disabled = !joined;
  if (joined) ui.message.focus();
}

async function join() {
  const { default: init, createMesh, WebSocketTransport } = state.lib;
  const room = ui.room.value.trim();
  ui.joinButton.disabled = true;
  setStatus(`connecting to ${serverUrl}…`);
  try {
    await init();
    const transport = new WebSocketTransport(serverUrl);
    transport.on("open", () => setStatus(`connected to ${serverUrl}`, "ok"));
    transport.on("close", ({ reason, reconnecting } = {}) => setStatus(
      `signaling connection closed${reason ? `: ${reason}` : ""}${reconnecting ? " (reconnecting…)" : ""}`,
      reconnecting ? "info" : "error"));
    transport.on("error", (message) => setStatus(`signaling error: ${describe(message)}`, "error"));
    const options = { transport, room: room || undefined };
    if (serverUrls.length > 1) options.servers = serverUrls.slice(1);
    // `?maxPeers=N` caps this page's links (tests use it to make a node reachable only through others).
    const maxPeers = Number(params.get("maxPeers"));
    if (Number.isInteger(maxPeers) && maxPeers > 0) options.maxPeers = maxPeers;
    const mesh = await createMesh(options);
    state.mesh = mesh;
    state.name = ui.name.value.trim() || `user-${short(mesh.peerId)}`;
    mesh.on("message", (m) => onMessage(m).catch((err) => setStatus(`error: ${describe(err)}`, "error")));
    const onLinkChange = (verb) => (peerId) => {
      if (verb === "connect") greetOnce().catch((err) => setStatus(`could not greet: ${describe(err)}`, "error"));
      else if (verb === "timeout") system(`the link to ${display(peerId)} timed out`);
      refreshPeers().catch((err) => setStatus(`error: ${describe(err)}`, "error"));
    };
    mesh.on("peer:connect", onLinkChange("connect"));
    mesh.on("peer:disconnect", onLinkChange("disconnect"));
    mesh.on("peer:timeout", onLinkChange("timeout"));
    // The subscription makes this node receive the topic; messages arrive through "message".
    await mesh.subscribe(TOPIC, () => {});
    await mesh.join();
    ui.self.textContent = `${state.name} · ${mesh.peerId}`;
    ui.self.dataset.peerId = mesh.peerId;
    ui.self.dataset.name = state.name;
    setJoined(true);
    setStatus(`joined ${serverUrl} (room ${room || "default"}) as ${state.name}`, "ok");
    system(`joined room ${room || "default"} as ${state.name} (${short(mesh.peerId)})`);
    state.refreshTimer = setInterval(
      () => refreshPeers().catch((err) => setStatus(`error: ${describe(err)}`, "error")),
      CONTACTS_REFRESH_MS);
    await refreshPeers();
    renderPeers();
  } catch (err) {
    setStatus(`could not join ${serverUrl}: ${describe(err)}`, "error");
    if (state.mesh) state.mesh.leave().catch(() => {});
    state.mesh = null;
    ui.joinButton.disabled = false;
  }
}

async function leave() {
  const mesh = state.mesh;
  if (!mesh) return;
  clearInterval(state.refreshTimer);
  ui.leaveButton.disabled = true;
  try {
    if (state.greeted) await broadcast("bye").catch(() => {});
    // So that a lookup of the name finds nothing rather than a peer that left.
    if (state.published) await mesh.remove(NAME_PREFIX + state.name).catch(() => {});
    await mesh.leave();
    setStatus("left the mesh", "info");
    system("left");
  } catch (err) {
    setStatus(`error while leaving: ${describe(err)}`, "error");
  }
  Object.assign(state, { mesh: null, greeted: false, published: false, queued: [], names: new Map(), linked: [], contacts: [] });
  ui.self.textContent = "not joined";
  ui.self.dataset.peerId = "";
  ui.leaveButton.disabled = false;
  ui.joinButton.disabled = false;
  setJoined(false);
  renderPeers();
}

// ---------------------------------------------------------------- start

ui.joinForm.addEventListener("submit", (e) => { e.preventDefault(); join(); });
ui.leaveButton.addEventListener("click", () => leave());
ui.sendForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const line = ui.message.value;
  ui.message.value = "";
  if (state.mesh) handleLine(line).catch((err) => system(`could not send: ${describe(err)}`));
});
window.addEventListener("pagehide", () => {
  if (state.mesh && state.greeted) state.mesh.sendBroadcast(TOPIC, payload("bye")).catch(() => {});
});

ui.name.value = params.get("name") ?? "";
ui.room.value = params.get("room") ?? "";
renderPeers();

try {
  state.lib = await import("./pkg/p2pmesh.js");
} catch (err) {
  console.warn("could not load ./pkg/p2pmesh.js:", err);
  setStatus("could not load the mesh library: run cargo xtask web", "error");
}
if (state.lib) {
  ui.joinButton.disabled = false;
  setStatus(`ready: signaling server ${serverUrl}`);
  if (params.has("name") && params.has("room")) join();
  else ui.name.focus();
}
