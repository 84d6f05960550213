// The sandbox's web client. Plain JavaScript, no build step: everything it shows comes from
// the control API (/_sandbox/...), and everything it does goes through it as the chosen person,
// so the app under test gets the same events, commands and interactivity payloads Slack sends.
"use strict";

const API = "/_sandbox";
const S = {
  info: null,
  users: [],
  usersById: {},
  channels: [],
  commands: [],
  me: null,
  current: null, // a channel id, or "dm:app" before the app's DM exists
  thread: null, // {channel, ts}
  messages: [],
  ephemerals: [],
  threadMessages: [],
  views: [],
  dev: false,
  devTab: "calls",
  devOpen: {}, // expanded log rows
  inspected: null, // a message shown in the developer panel
  calls: [],
  deliveries: [],
  faults: [],
  rateLimits: null,
  dismissed: new Set(),
  lastRead: {},
  modalKey: null,
  modalErrors: {},
  modalBusy: false,
  live: false,
};

// ---------- helpers ----------

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(API + path, init);
  let json = null;
  try { json = await res.json(); } catch (_) { json = { ok: false, error: "unreadable_reply" }; }
  return json;
}
const get = (path) => api("GET", path);
const post = (path, body) => api("POST", path, body);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "html") node.innerHTML = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
// Slack's text arrives with its three escapes; undo them before escaping for HTML.
function unslack(s) {
  return String(s).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function toast(text) {
  const t = el("div", { class: "toast", role: "status" }, text);
  document.body.append(t);
  setTimeout(() => t.remove(), 4000);
}

const COLORS = ["#e8912d", "#2bac76", "#1264a3", "#e01e5a", "#9f69e7", "#4a154b", "#36c5f0", "#b35900"];
function colorFor(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}
function userName(id) {
  const u = S.usersById[id];
  return u ? u.name : id;
}
function displayName(id) {
  const u = S.usersById[id];
  if (!u) return id;
  return u.real_name || u.name;
}
function avatar(id, cls = "avatar") {
  const u = S.usersById[id];
  const isApp = S.info && id === S.info.bot_user_id;
  const letter = isApp ? "S" : (u ? (u.real_name || u.name) : "?").charAt(0).toUpperCase();
  return el("div", { class: cls, style: `background:${isApp ? "#3f0e40" : colorFor(id)}` }, letter);
}

function myTz() {
  const u = S.usersById[S.me];
  return (u && u.tz) || undefined;
}
function fmt(date, opts) {
  try { return new Intl.DateTimeFormat("en-US", { timeZone: myTz(), ...opts }).format(date); }
  catch (_) { return new Intl.DateTimeFormat("en-US", opts).format(date); }
}
function timeOf(ts) {
  return fmt(new Date(parseFloat(ts) * 1000), { hour: "numeric", minute: "2-digit" });
}
function dayOf(ts) {
  return fmt(new Date(parseFloat(ts) * 1000), { weekday: "long", month: "long", day: "numeric" });
}

// ---------- emoji ----------

const EMOJI = {
  "+1": "👍", thumbsup: "👍", "-1": "👎", thumbsdown: "👎", white_check_mark: "✅", heavy_check_mark: "✔️",
  x: "❌", warning: "⚠️", rotating_light: "🚨", lock: "🔒", unlock: "🔓", hourglass: "⌛", hourglass_flowing_sand: "⏳",
  large_green_circle: "🟢", red_circle: "🔴", large_yellow_circle: "🟡", large_orange_circle: "🟠", white_circle: "⚪",
  large_blue_circle: "🔵", black_circle: "⚫", fire: "🔥", tada: "🎉", eyes: "👀", rocket: "🚀", wave: "👋",
  heart: "❤️", smile: "😄", slightly_smiling_face: "🙂", joy: "😂", thinking_face: "🤔", pray: "🙏", clap: "👏",
  bell: "🔔", no_bell: "🔕", wrench: "🔧", hammer_and_wrench: "🛠️", gear: "⚙️", zap: "⚡", bulb: "💡",
  memo: "📝", pushpin: "📌", link: "🔗", information_source: "ℹ️", question: "❓", exclamation: "❗",
  no_entry: "⛔", no_entry_sign: "🚫", stop_sign: "🛑", construction: "🚧", ok_hand: "👌", muscle: "💪",
  sparkles: "✨", star: "⭐", boom: "💥", sos: "🆘", clock1: "🕐", calendar: "📅", chart_with_upwards_trend: "📈",
  chart_with_downwards_trend: "📉", mag: "🔍", package: "📦", robot_face: "🤖", computer: "💻", desktop_computer: "🖥️",
  satellite: "📡", thermometer: "🌡️", battery: "🔋", electric_plug: "🔌", key: "🔑", shield: "🛡️", skull: "💀",
  arrows_counterclockwise: "🔄", repeat: "🔁", arrow_right: "➡️", arrow_up: "⬆️", arrow_down: "⬇️", new: "🆕",
  green_heart: "💚", blue_heart: "💙", broken_heart: "💔", sunny: "☀️", cloud: "☁️", siren: "🚨", ghost: "👻",
  raised_hands: "🙌", point_right: "👉", point_up: "☝️", speech_balloon: "💬", mailbox: "📫", email: "📧",
};
function emoji(name) {
  const key = name.replace(/::skin-tone-\d/, "");
  return EMOJI[key] || null;
}
function emojify(html) {
  return html.replace(/:([a-z0-9_+\-]+):/g, (m, name) => {
    const e = emoji(name);
    return e ? `<span class="emoji" title=":${name}:">${e}</span>` : m;
  });
}

// ---------- mrkdwn ----------

const ORD = (n) => n + (["th", "st", "nd", "rd"][((n % 100) - 20) % 10] || ["th", "st", "nd", "rd"][n % 100] || "th");
function dayDiff(date) {
  const f = (d) => fmt(d, { year: "numeric", month: "2-digit", day: "2-digit" });
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  const tomorrow = new Date(Date.now() + 86400000);
  if (f(date) === f(today)) return "Today";
  if (f(date) === f(yesterday)) return "Yesterday";
  if (f(date) === f(tomorrow)) return "Tomorrow";
  return null;
}
function ago(date) {
  const s = Math.round((Date.now() - date.getTime()) / 1000);
  const abs = Math.abs(s);
  const [n, unit] = abs < 60 ? [abs, "second"] : abs < 3600 ? [Math.round(abs / 60), "minute"] : abs < 86400 ? [Math.round(abs / 3600), "hour"] : abs < 2592000 ? [Math.round(abs / 86400), "day"] : abs < 31536000 ? [Math.round(abs / 2592000), "month"] : [Math.round(abs / 31536000), "year"];
  const words = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return s >= 0 ? `${words} ago` : `in ${words}`;
}
// `<!date^epoch^format^link|fallback>`: Slack formats it in the reader's time zone.
function formatDate(epoch, format) {
  const date = new Date(epoch * 1000);
  if (isNaN(date.getTime())) return null;
  const day = Number(fmt(date, { day: "numeric" }));
  const monthLong = fmt(date, { month: "long" });
  const monthShort = fmt(date, { month: "short" });
  const year = fmt(date, { year: "numeric" });
  const weekday = fmt(date, { weekday: "long" });
  const tokens = {
    date_num: fmt(date, { year: "numeric", month: "2-digit", day: "2-digit" }).replace(/(\d+)\/(\d+)\/(\d+)/, "$3-$1-$2"),
    date: `${monthLong} ${ORD(day)}, ${year}`,
    date_short: `${monthShort} ${day}, ${year}`,
    date_long: `${weekday}, ${monthLong} ${ORD(day)}, ${year}`,
    time: fmt(date, { hour: "numeric", minute: "2-digit" }),
    time_secs: fmt(date, { hour: "numeric", minute: "2-digit", second: "2-digit" }),
    ago: ago(date),
  };
  const rel = dayDiff(date);
  tokens.date_pretty = rel || tokens.date;
  tokens.date_short_pretty = rel || tokens.date_short;
  tokens.date_long_pretty = rel || tokens.date_long;
  return format.replace(/\{(\w+)\}/g, (m, t) => (t in tokens ? tokens[t] : m));
}

function channelById(id) {
  return S.channels.find((c) => c.id === id);
}

// One `<…>` token of Slack's markup, as HTML.
function angle(inner) {
  const bar = inner.indexOf("|");
  const target = bar >= 0 ? inner.slice(0, bar) : inner;
  const label = bar >= 0 ? inner.slice(bar + 1) : null;
  if (target.startsWith("@")) {
    const id = target.slice(1);
    const name = label || userName(id);
    return `<span class="mention${id === S.me ? " me" : ""}" data-user="${esc(id)}">@${esc(name)}</span>`;
  }
  if (target.startsWith("#")) {
    const id = target.slice(1);
    const c = channelById(id);
    const name = label || (c ? c.name : id);
    return `<a class="mention channel-link" data-channel="${esc(id)}" href="#">#${esc(name)}</a>`;
  }
  if (target.startsWith("!")) {
    const parts = target.slice(1).split("^");
    const kind = parts[0];
    if (kind === "here" || kind === "channel" || kind === "everyone") {
      return `<span class="mention broadcast">@${kind}</span>`;
    }
    if (kind === "subteam") return `<span class="mention">${esc(label || "@" + (parts[1] || "group"))}</span>`;
    if (kind === "date") {
      const text = formatDate(Number(parts[1]), parts[2] || "{date}");
      const shown = esc(text === null ? (label || "") : text);
      const link = parts[3];
      return link ? `<a class="date-token" href="${esc(link)}" target="_blank" rel="noopener">${shown}</a>` : `<span class="date-token" title="${esc(label || "")}">${shown}</span>`;
    }
    return esc(label || target);
  }
  const url = target;
  const safe = /^(https?:|mailto:|tel:|slack:)/i.test(url) ? url : "#";
  return `<a href="${esc(safe)}" target="_blank" rel="noopener noreferrer">${esc(label || url.replace(/^mailto:/, ""))}</a>`;
}

// Slack's mrkdwn: *bold*, _italic_, ~strike~, `code`, ```blocks```, > quotes, <links|and> <@mentions>.
function mrkdwn(text) {
  if (text === undefined || text === null) return "";
  const held = [];
  const hold = (html) => `\u0000${held.push(html) - 1}\u0000`;
  let s = String(text);
  s = s.replace(/```([\s\S]*?)```/g, (m, code) => hold(`<pre>${esc(unslack(code.replace(/^\n/, "")))}</pre>`));
  s = s.replace(/`([^`\n]+)`/g, (m, code) => hold(`<code>${esc(unslack(code))}</code>`));
  s = s.replace(/<([^<>\n]+)>/g, (m, inner) => hold(angle(unslack(inner))));
  s = esc(unslack(s));
  // Around a marker: spaces, punctuation, other markers, held tokens, and (after escaping)
  // the `&…;` of an entity.
  const pre = "(^|[\\s(\\[{;*_~\\u0000])";
  const post = "(?=$|[\\s.,!?;:)\\]}&*_~\\u0000])";
  s = s.replace(new RegExp(pre + "\\*(?! )([^*\\n]+?)\\*" + post, "g"), "$1<b>$2</b>");
  s = s.replace(new RegExp(pre + "_(?! )([^_\\n]+?)_" + post, "g"), "$1<i>$2</i>");
  s = s.replace(new RegExp(pre + "~(?! )([^~\\n]+?)~" + post, "g"), "$1<s>$2</s>");
  s = s.replace(/(^|\n)&gt; ?([^\n]*)/g, "$1<blockquote>$2</blockquote>");
  s = emojify(s);
  s = s.replace(/\n/g, "<br>").replace(/<\/blockquote><br>/g, "</blockquote>");
  s = s.replace(/\u0000(\d+)\u0000/g, (m, i) => held[Number(i)]);
  return s;
}

function textObject(t) {
  if (!t) return "";
  if (typeof t === "string") return mrkdwn(t);
  if (t.type === "plain_text") {
    const html = esc(t.text || "").replace(/\n/g, "<br>");
    return t.emoji === false ? html : emojify(html);
  }
  return mrkdwn(t.text);
}
function plain(t) {
  if (!t) return "";
  return typeof t === "string" ? t : t.text || "";
}
function htmlNode(tag, cls, html) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  n.innerHTML = html;
  return n;
}

// ---------- rich text ----------

function richElement(e) {
  const style = e.style || {};
  let html;
  switch (e.type) {
    case "text": html = esc(e.text || "").replace(/\n/g, "<br>"); break;
    case "link": {
      const safe = /^(https?:|mailto:)/i.test(e.url || "") ? e.url : "#";
      html = `<a href="${esc(safe)}" target="_blank" rel="noopener">${esc(e.text || e.url || "")}</a>`;
      break;
    }
    case "user": html = angle("@" + e.user_id); break;
    case "channel": html = angle("#" + e.channel_id); break;
    case "usergroup": html = angle("!subteam^" + e.usergroup_id); break;
    case "broadcast": html = angle("!" + e.range); break;
    case "emoji": html = e.unicode ? String.fromCodePoint(...e.unicode.split("-").map((h) => parseInt(h, 16))) : (emoji(e.name) || `:${esc(e.name)}:`); break;
    case "date": html = angle(`!date^${e.timestamp}^${e.format}|${e.fallback || ""}`); break;
    case "color": html = esc(e.value || ""); break;
    default: html = esc(e.text || "");
  }
  if (style.code) html = `<code>${html}</code>`;
  if (style.bold) html = `<b>${html}</b>`;
  if (style.italic) html = `<i>${html}</i>`;
  if (style.strike) html = `<s>${html}</s>`;
  return html;
}
function richInline(elements) {
  return (elements || []).map(richElement).join("");
}
function richText(block) {
  const out = document.createElement("div");
  out.className = "text rich-text";
  for (const part of block.elements || []) {
    if (part.type === "rich_text_section") {
      out.append(htmlNode("div", "", emojify(richInline(part.elements))));
    } else if (part.type === "rich_text_preformatted") {
      out.append(htmlNode("pre", "", richInline(part.elements)));
    } else if (part.type === "rich_text_quote") {
      out.append(htmlNode("blockquote", "", richInline(part.elements)));
    } else if (part.type === "rich_text_list") {
      const list = document.createElement(part.style === "ordered" ? "ol" : "ul");
      list.className = "rt-list";
      list.style.marginLeft = `${(part.indent || 0) * 20}px`;
      for (const item of part.elements || []) list.append(htmlNode("li", "", richInline(item.elements)));
      out.append(list);
    }
  }
  return out;
}

// ---------- Block Kit ----------

// Where an interactive element lives: a message (channel, ts) or a view (view_id).
function blocks(list, where) {
  const wrap = el("div", { class: "blocks" });
  (list || []).forEach((b, i) => {
    const node = block(b, where, i);
    if (node) wrap.append(node);
  });
  return wrap;
}

function block(b, where, index) {
  const blockId = b.block_id || `block${index}`;
  switch (b.type) {
    case "header":
      return htmlNode("div", "block block-header", textObject(b.text));
    case "section": {
      const main = el("div", { class: "section-main" });
      if (b.text) main.append(htmlNode("div", "text", textObject(b.text)));
      if (b.fields) {
        const fields = el("div", { class: "fields" });
        for (const f of b.fields) fields.append(htmlNode("div", "text", textObject(f)));
        main.append(fields);
      }
      const node = el("div", { class: "block section" }, main);
      if (b.accessory) node.append(el("div", { class: "accessory" }, element(b.accessory, blockId, where)));
      return node;
    }
    case "context": {
      const node = el("div", { class: "block context" });
      for (const e of b.elements || []) {
        if (e.type === "image") node.append(image(e.image_url, e.alt_text, ""));
        else node.append(htmlNode("span", "text", textObject(e)));
      }
      return node;
    }
    case "divider":
      return el("hr", { class: "divider" });
    case "actions": {
      const node = el("div", { class: "block actions" });
      for (const e of b.elements || []) node.append(element(e, blockId, where));
      return node;
    }
    case "image": {
      const node = el("div", { class: "block image-block" });
      if (b.title) node.append(htmlNode("div", "image-title", textObject(b.title)));
      node.append(image(b.image_url || (b.slack_file && b.slack_file.url), b.alt_text, ""));
      return node;
    }
    case "rich_text":
      return el("div", { class: "block" }, richText(b));
    case "markdown":
      return htmlNode("div", "block text", mrkdwn(String(b.text || "").replace(/\*\*([^*]+)\*\*/g, "*$1*").replace(/^#+ (.*)$/gm, "*$1*")));
    case "input":
      return inputBlock(b, blockId, where);
    case "file":
      return el("div", { class: "block unknown-block" }, `[file ${b.external_id || ""}]`);
    case "video":
      return el("div", { class: "block" }, el("a", { href: b.title_url || b.video_url, target: "_blank" }, plain(b.title) || "Video"));
    default:
      return el("div", { class: "block unknown-block" }, `[${b.type} block]`);
  }
}

function image(url, alt, cls) {
  const img = el("img", { src: url || "", alt: alt || "", class: cls, loading: "lazy" });
  img.addEventListener("error", () => img.replaceWith(el("span", { class: "img-missing", title: url || "" }, alt || "image")));
  return img;
}

function optionsOf(e) {
  const all = [...(e.options || [])];
  for (const g of e.option_groups || []) all.push(...(g.options || []));
  return all;
}

function peopleOptions() {
  return S.users.filter((u) => !u.deleted && u.id !== (S.info && S.info.bot_user_id));
}

// A select, built as a native <select> (what people and the browser test pick from).
function selectFor(e, multiple) {
  const sel = el("select", { class: "select", "aria-label": plain(e.placeholder) || e.action_id, multiple, dataset: { actionId: e.action_id || "" } });
  if (!multiple) sel.append(el("option", { value: "" }, plain(e.placeholder) || "Select an item"));
  const type = e.type.replace(/^multi_/, "");
  let opts = [];
  let initial = [];
  if (type === "users_select") {
    opts = peopleOptions().map((u) => [u.id, u.real_name || u.name]);
    initial = e.initial_users || (e.initial_user ? [e.initial_user] : []);
  } else if (type === "conversations_select" || type === "channels_select") {
    opts = S.channels.filter((c) => !c.is_im).map((c) => [c.id, "#" + c.name]);
    initial = e.initial_conversations || e.initial_channels || [e.initial_conversation || e.initial_channel].filter(Boolean);
  } else {
    if (e.option_groups) {
      for (const g of e.option_groups) {
        const group = el("optgroup", { label: plain(g.label) });
        for (const o of g.options || []) group.append(el("option", { value: o.value }, plain(o.text)));
        sel.append(group);
      }
    }
    opts = (e.options || []).map((o) => [o.value, plain(o.text)]);
    initial = (e.initial_options || (e.initial_option ? [e.initial_option] : [])).map((o) => o.value);
  }
  for (const [v, label] of opts) sel.append(el("option", { value: v }, label));
  for (const o of sel.options) if (initial.includes(o.value)) o.selected = true;
  return sel;
}

function readValue(e, node) {
  const type = e.type;
  if (type.endsWith("select") && type.startsWith("multi_")) {
    return [...node.selectedOptions].map((o) => o.value);
  }
  if (type.endsWith("select")) return node.value || null;
  if (type === "checkboxes") return [...node.querySelectorAll("input:checked")].map((i) => i.value);
  if (type === "radio_buttons") {
    const c = node.querySelector("input:checked");
    return c ? c.value : null;
  }
  if (type === "datepicker" || type === "timepicker") return node.value || null;
  if (type === "datetimepicker") return node.value ? Math.floor(new Date(node.value).getTime() / 1000) : null;
  return node.value;
}

function element(e, blockId, where, inInput) {
  const act = (value) => act_on(e, blockId, where, value);
  switch (e.type) {
    case "button": {
      const b = el("button", { class: `btn${e.style ? " " + e.style : ""}`, type: "button", dataset: { actionId: e.action_id || "" } });
      b.innerHTML = textObject(e.text);
      b.addEventListener("click", () => {
        if (e.url) window.open(e.url, "_blank", "noopener");
        withConfirm(e.confirm, () => act(undefined));
      });
      return b;
    }
    case "static_select": case "external_select": case "users_select": case "conversations_select": case "channels_select":
    case "multi_static_select": case "multi_external_select": case "multi_users_select": case "multi_conversations_select": case "multi_channels_select": {
      const multiple = e.type.startsWith("multi_");
      const sel = selectFor(e, multiple);
      if (!inInput) {
        sel.addEventListener("change", () => {
          const v = readValue(e, sel);
          withConfirm(e.confirm, () => act(v));
        });
      }
      return sel;
    }
    case "overflow": {
      const wrap = el("span", { class: "overflow-wrap" });
      const menu = el("div", { class: "overflow-menu", hidden: true });
      for (const o of e.options || []) {
        menu.append(el("div", { onclick: () => { menu.hidden = true; if (o.url) window.open(o.url, "_blank"); withConfirm(e.confirm, () => act(o.value)); } }, plain(o.text)));
      }
      wrap.append(el("button", { class: "btn", type: "button", "aria-label": "More actions", dataset: { actionId: e.action_id || "" }, onclick: () => (menu.hidden = !menu.hidden) }, "⋮"), menu);
      return wrap;
    }
    case "datepicker": case "timepicker": case "datetimepicker": {
      const input = el("input", { class: "input", type: e.type === "datepicker" ? "date" : e.type === "timepicker" ? "time" : "datetime-local", dataset: { actionId: e.action_id || "" } });
      if (e.initial_date) input.value = e.initial_date;
      if (e.initial_time) input.value = e.initial_time;
      if (!inInput) input.addEventListener("change", () => act(readValue(e, input)));
      return input;
    }
    case "checkboxes": case "radio_buttons": {
      const group = el("div", { class: "choices", dataset: { actionId: e.action_id || "" } });
      const name = `${blockId}.${e.action_id}.${Math.random()}`;
      const initial = (e.initial_options || (e.initial_option ? [e.initial_option] : [])).map((o) => o.value);
      for (const o of e.options || []) {
        const input = el("input", { type: e.type === "checkboxes" ? "checkbox" : "radio", name, value: o.value });
        if (initial.includes(o.value)) input.checked = true;
        if (!inInput) input.addEventListener("change", () => act(readValue(e, group)));
        const label = el("label", { class: "choice" }, input);
        label.append(htmlNode("span", "", textObject(o.text)));
        group.append(label);
      }
      return group;
    }
    case "plain_text_input": case "number_input": case "email_text_input": case "url_text_input": {
      const type = { number_input: "number", email_text_input: "email", url_text_input: "url" }[e.type] || "text";
      const node = e.multiline
        ? el("textarea", { dataset: { actionId: e.action_id || "" }, placeholder: plain(e.placeholder), maxlength: e.max_length })
        : el("input", { class: "input", type, dataset: { actionId: e.action_id || "" }, placeholder: plain(e.placeholder), maxlength: e.max_length });
      if (e.initial_value !== undefined) node.value = e.initial_value;
      return node;
    }
    case "image":
      return image(e.image_url, e.alt_text, "");
    default:
      return el("span", { class: "unknown-block" }, `[${e.type}]`);
  }
}

// Slack's confirmation dialog, before an element acts.
function withConfirm(confirm, then) {
  if (!confirm) return then();
  const box = el("div", { class: "confirm", role: "dialog", "aria-label": plain(confirm.title) || "Are you sure?" });
  const close = () => { box.remove(); syncOverlay(); };
  box.append(
    el("div", { class: "modal-head" }, el("h2", {}, plain(confirm.title) || "Are you sure?")),
    htmlNode("div", "modal-body", textObject(confirm.text)),
    el("div", { class: "modal-foot" },
      el("button", { class: "btn big", type: "button", onclick: close }, plain(confirm.deny) || "Cancel"),
      el("button", { class: `btn big ${confirm.style === "danger" ? "danger" : "primary"}`, type: "button", onclick: () => { close(); then(); } }, plain(confirm.confirm) || "Yes")),
  );
  overlay().append(box);
  syncOverlay();
}

// A click or a pick: the real `block_actions` through the control API.
async function act_on(e, blockId, where, value) {
  const body = { user: S.me, action_id: e.action_id, block_id: blockId };
  if (value !== undefined && value !== null) body.value = value;
  if (where.view_id) body.view_id = where.view_id;
  else { body.channel = where.channel; body.ts = where.ts; }
  const reply = await post("/actions", body);
  if (!reply.ok) toast(`The action failed: ${reply.error}`);
  else if (reply.error) toast(`The app did not answer in time (${reply.error}).`);
  refresh();
}

// ---------- modals ----------

function overlay() {
  return document.getElementById("overlay");
}
function syncOverlay() {
  const o = overlay();
  o.hidden = o.children.length === 0;
}

function inputBlock(b, blockId, where) {
  const e = b.element || {};
  const errors = (where.errors || {});
  const node = el("div", { class: `block input-block${errors[blockId] ? " has-error" : ""}`, dataset: { blockId, actionId: e.action_id || "" } });
  const id = `in-${blockId}-${e.action_id}`;
  const label = el("label", { for: id }, plain(b.label));
  if (b.optional) label.append(el("span", { class: "optional" }, " (optional)"));
  node.append(label);
  const field = element(e, blockId, where, !b.dispatch_action);
  field.id = id;
  field.removeAttribute("aria-label"); // named by its label, as Slack's are
  field.classList.add("input-field");
  if (b.dispatch_action) {
    field.addEventListener("change", () => act_on(e, blockId, where, readValue(e, field)));
  }
  node.append(field);
  if (b.hint) node.append(htmlNode("div", "hint", textObject(b.hint)));
  if (errors[blockId]) node.append(el("div", { class: "field-error", role: "alert" }, "⚠ ", errors[blockId]));
  return node;
}

function topModal() {
  const modals = S.views.filter((v) => v.type === "modal");
  return modals[modals.length - 1] || null;
}

function renderModal() {
  const o = overlay();
  const view = topModal();
  const key = view ? `${view.id}:${view.hash}` : null;
  if (key === S.modalKey) return;
  const kept = collectModal(); // what was typed survives an update of the same view
  o.querySelectorAll(".modal").forEach((m) => m.remove());
  if (!view) {
    S.modalKey = null;
    syncOverlay();
    return;
  }
  if (!S.modalKey || !S.modalKey.startsWith(view.id + ":")) S.modalErrors = {};
  S.modalKey = key;
  const depth = S.views.filter((v) => v.type === "modal").length;
  const m = el("div", { class: "modal", role: "dialog", "aria-label": plain(view.title), dataset: { viewId: view.id } });
  const head = el("div", { class: "modal-head" });
  if (depth > 1) head.append(el("button", { class: "back", type: "button", "aria-label": "Back", onclick: () => closeModal(view) }, "←"));
  head.append(el("div", { class: "app-icon" }, "S"), el("h2", {}, plain(view.title)), el("button", { class: "x", type: "button", "aria-label": "Close", onclick: () => closeModal(view) }, "×"));
  m.append(head);
  const body = el("div", { class: "modal-body" });
  body.append(blocks(view.blocks, { view_id: view.id, errors: S.modalErrors }));
  m.append(body);
  m.append(el("div", { class: "modal-error", hidden: true }));
  const foot = el("div", { class: "modal-foot" });
  foot.append(el("button", { class: "btn big", type: "button", onclick: () => closeModal(view) }, plain(view.close) || "Cancel"));
  if (view.submit) {
    foot.append(el("button", { class: "btn big primary", type: "button", "data-testid": "modal-submit", onclick: () => submitModal(view) }, plain(view.submit)));
  }
  m.append(foot);
  o.prepend(m);
  restoreModal(kept);
  syncOverlay();
}

function collectModal() {
  const values = {};
  const m = overlay().querySelector(".modal");
  if (!m) return values;
  for (const blockNode of m.querySelectorAll(".input-block")) {
    const field = blockNode.querySelector(".input-field");
    values[blockNode.dataset.blockId] = { node: field, actionId: blockNode.dataset.actionId };
  }
  return values;
}

function restoreModal(kept) {
  const m = overlay().querySelector(".modal");
  if (!m) return;
  for (const blockNode of m.querySelectorAll(".input-block")) {
    const old = kept[blockNode.dataset.blockId];
    const field = blockNode.querySelector(".input-field");
    if (!old || !field || old.actionId !== blockNode.dataset.actionId || old.node.tagName !== field.tagName) continue;
    if (field.tagName === "SELECT") {
      const chosen = new Set([...old.node.selectedOptions].map((o) => o.value));
      for (const o of field.options) o.selected = chosen.has(o.value);
    } else if ("value" in field && old.node.value) {
      field.value = old.node.value;
    }
  }
}

async function closeModal(view) {
  await post("/views/close", { user: S.me, view_id: view.id });
  refresh();
}

async function submitModal(view) {
  if (S.modalBusy) return;
  const m = overlay().querySelector(".modal");
  const values = {};
  const missing = {};
  for (const b of view.blocks || []) {
    if (b.type !== "input") continue;
    const blockId = b.block_id;
    const node = m.querySelector(`.input-block[data-block-id="${CSS.escape(blockId || "")}"] .input-field`);
    if (!node || !b.element) continue;
    const v = readValue(b.element, node);
    const empty = v === null || v === undefined || v === "" || (Array.isArray(v) && v.length === 0);
    if (empty && !b.optional) missing[blockId] = "Please complete this required field.";
    if (!empty) values[blockId] = { [b.element.action_id]: v };
  }
  if (Object.keys(missing).length) {
    showModalErrors(missing);
    return;
  }
  S.modalBusy = true;
  m.querySelectorAll(".modal-foot button").forEach((b) => (b.disabled = true));
  try {
    const reply = await post("/views/submit", { user: S.me, view_id: view.id, values });
    if (!reply.ok) {
      modalBanner(`Something went wrong: ${reply.error}`);
    } else if (reply.error) {
      modalBanner("We had some trouble connecting. Try again?");
    } else if (reply.errors && Object.keys(reply.errors).length) {
      showModalErrors(reply.errors);
    }
  } finally {
    S.modalBusy = false;
    m.querySelectorAll(".modal-foot button").forEach((b) => (b.disabled = false));
  }
  refresh();
}

function modalBanner(text) {
  const banner = overlay().querySelector(".modal .modal-error");
  if (banner) { banner.textContent = text; banner.hidden = false; }
}

function showModalErrors(errors) {
  S.modalErrors = errors;
  const m = overlay().querySelector(".modal");
  if (!m) return;
  for (const blockNode of m.querySelectorAll(".input-block")) {
    blockNode.querySelectorAll(".field-error").forEach((n) => n.remove());
    const err = errors[blockNode.dataset.blockId];
    blockNode.classList.toggle("has-error", !!err);
    if (err) blockNode.append(el("div", { class: "field-error", role: "alert" }, "⚠ ", err));
  }
}

// ---------- messages ----------

function isApp(m) {
  return S.info && (m.user === S.info.bot_user_id || m.bot_id === S.info.bot_id);
}

function messageNode(m, ctx) {
  const where = { channel: ctx.channel, ts: m.ts };
  const node = el("div", { class: `msg${ctx.cont ? " cont" : ""}${m.ephemeral ? " ephemeral" : ""}`, dataset: { ts: m.ts, testid: "message" } });
  node.setAttribute("data-testid", "message");
  if (ctx.cont) node.append(el("div", { class: "gutter-time" }, timeOf(m.ts)));
  else node.append(avatar(m.user || m.bot_id));
  const body = el("div", { class: "msg-body" });
  if (m.ephemeral) {
    body.append(el("div", { class: "only-you" }, "👁 Only visible to you ", el("a", { onclick: () => { S.dismissed.add(m.ts); render(); } }, "Dismiss")));
  }
  if (!ctx.cont) {
    const head = el("div", { class: "msg-head" }, el("span", { class: "author" }, isApp(m) ? (m.bot_profile && m.bot_profile.name) || displayName(m.user) : displayName(m.user)));
    if (isApp(m) || (S.usersById[m.user] && S.usersById[m.user].is_bot)) head.append(el("span", { class: "app-badge" }, "APP"));
    head.append(el("span", { class: "time", title: new Date(parseFloat(m.ts) * 1000).toString() }, timeOf(m.ts)));
    body.append(head);
  }
  const content = el("div", { class: "content" });
  const hasBlocks = Array.isArray(m.blocks) && m.blocks.length > 0;
  if (hasBlocks) content.append(blocks(m.blocks, where));
  else if (m.text) content.append(htmlNode("div", "text", mrkdwn(m.text)));
  for (const a of m.attachments || []) content.append(attachment(a, where));
  if (m.files) for (const f of m.files) content.append(el("div", { class: "unknown-block" }, `📎 ${f.name || f.title || f.id}`));
  if (m.edited) content.append(el("span", { class: "edited" }, "(edited)"));
  body.append(content);
  if (m.reactions && m.reactions.length) {
    const row = el("div", { class: "reactions" });
    for (const r of m.reactions) {
      const mine = (r.users || []).includes(S.me);
      row.append(el("button", { class: `reaction${mine ? " mine" : ""}`, type: "button", title: `:${r.name}:`, onclick: () => react(ctx.channel, m.ts, r.name, !mine) },
        el("span", { class: "emoji" }, emoji(r.name) || `:${r.name}:`), String(r.count || (r.users || []).length)));
    }
    body.append(row);
  }
  if (!ctx.inThread && m.reply_count > 0) {
    const link = el("div", { class: "thread-link", role: "button", "data-testid": "thread-link", onclick: () => openThread(ctx.channel, m.ts) });
    for (const u of (m.reply_users || []).slice(0, 3)) link.append(avatar(u, "mini-avatar"));
    link.append(el("b", {}, `${m.reply_count} ${m.reply_count === 1 ? "reply" : "replies"}`));
    if (m.latest_reply) link.append(el("span", { class: "last" }, `Last reply ${timeOf(m.latest_reply)}`));
    body.append(link);
  }
  node.append(body);
  if (!m.ephemeral) {
    const tools = el("div", { class: "msg-actions" });
    tools.append(el("button", { type: "button", title: "React with ✅", onclick: () => react(ctx.channel, m.ts, "white_check_mark", true) }, "✅"));
    tools.append(el("button", { type: "button", title: "React with 👀", onclick: () => react(ctx.channel, m.ts, "eyes", true) }, "👀"));
    if (!ctx.inThread) tools.append(el("button", { type: "button", title: "Reply in thread", onclick: () => openThread(ctx.channel, m.ts) }, "💬"));
    tools.append(el("button", { type: "button", title: "Show the raw JSON", onclick: () => inspect(m) }, "{ }"));
    node.append(tools);
  } else {
    const tools = el("div", { class: "msg-actions" }, el("button", { type: "button", title: "Show the raw JSON", onclick: () => inspect(m) }, "{ }"));
    node.append(tools);
  }
  return node;
}

function attachment(a, where) {
  const color = a.color ? (a.color.startsWith("#") ? a.color : { good: "#2eb886", warning: "#daa038", danger: "#a30200" }[a.color] || `#${a.color}`) : "#ddd";
  const body = el("div", { class: "att-body" });
  if (a.pretext) body.append(htmlNode("div", "text", mrkdwn(a.pretext)));
  if (a.author_name) body.append(el("div", { class: "notice" }, a.author_name));
  if (a.title) body.append(htmlNode("div", "att-title", a.title_link ? `<a href="${esc(a.title_link)}" target="_blank">${esc(a.title)}</a>` : esc(a.title)));
  if (a.text) body.append(htmlNode("div", "text", mrkdwn(a.text)));
  if (a.fields && a.fields.length) {
    const grid = el("div", { class: "att-fields" });
    for (const f of a.fields) grid.append(el("div", { style: f.short ? "" : "grid-column: span 2" }, el("b", {}, f.title || ""), htmlNode("div", "text", mrkdwn(f.value || ""))));
    body.append(grid);
  }
  if (a.blocks) body.append(blocks(a.blocks, where));
  if (a.footer) body.append(el("div", { class: "notice" }, a.footer));
  return el("div", { class: "attachment" }, el("div", { class: "bar", style: `background:${color}` }), body);
}

function messageList(list, channel, inThread) {
  const frag = document.createDocumentFragment();
  let prev = null;
  let prevDay = null;
  for (const m of list) {
    const day = dayOf(m.ts);
    if (!inThread && day !== prevDay) {
      frag.append(el("div", { class: "day" }, el("span", {}, dayDiff(new Date(parseFloat(m.ts) * 1000)) || day)));
      prev = null;
    }
    prevDay = day;
    const cont = prev && !prev.ephemeral && !m.ephemeral && prev.user === m.user && parseFloat(m.ts) - parseFloat(prev.ts) < 300 && !(prev.reply_count > 0 && !inThread);
    frag.append(messageNode(m, { channel, cont, inThread }));
    prev = m;
  }
  return frag;
}

async function react(channel, ts, name, add) {
  const reply = await post(add ? "/reactions" : "/reactions/remove", { user: S.me, channel, ts, name });
  if (!reply.ok && reply.error !== "already_reacted") toast(`Reaction failed: ${reply.error}`);
  refresh();
}

function inspect(m) {
  S.inspected = m;
  S.dev = true;
  S.devTab = "message";
  render();
}

// ---------- composer ----------

const composers = {};

function composer(key, placeholder, onSend) {
  if (composers[key]) {
    composers[key].textarea.placeholder = placeholder;
    composers[key].onSend = onSend;
    return composers[key].node;
  }
  const textarea = el("textarea", { rows: 1, placeholder, "aria-label": placeholder, "data-testid": `composer-${key}` });
  const send = el("button", { class: "send", type: "button", title: "Send", disabled: true }, "➤");
  const ac = el("div", { class: "autocomplete", hidden: true, "data-testid": "autocomplete" });
  const node = el("div", { class: "composer-inner" }, ac, el("div", { class: "composer" }, textarea, el("div", { class: "toolbar" }, el("span", {}, "@ to mention, / for commands, Shift+Enter for a new line"), send)));
  const state = { node, textarea, ac, onSend, items: [], sel: 0, range: null };
  composers[key] = state;
  const doSend = async () => {
    const text = textarea.value.trim();
    if (!text) return;
    textarea.value = "";
    send.disabled = true;
    hideAc(state);
    autosize(textarea);
    await state.onSend(text);
  };
  send.addEventListener("click", doSend);
  textarea.addEventListener("input", () => {
    send.disabled = !textarea.value.trim();
    autosize(textarea);
    suggest(state);
  });
  textarea.addEventListener("click", () => suggest(state));
  // Later than the blur, so a click on a suggestion lands first; and only if the focus did not
  // come back meanwhile: a click elsewhere then fast typing here would have had this stale
  // timer hide the suggestions just offered, and Enter send what was typed.
  textarea.addEventListener("blur", () => setTimeout(() => { if (document.activeElement !== textarea) hideAc(state); }, 150));
  textarea.addEventListener("keydown", (ev) => {
    if (!ac.hidden && state.items.length) {
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        state.sel = (state.sel + (ev.key === "ArrowDown" ? 1 : state.items.length - 1)) % state.items.length;
        drawAc(state);
        return;
      }
      if (ev.key === "Tab" || (ev.key === "Enter" && !ev.shiftKey)) {
        ev.preventDefault();
        pick(state, state.items[state.sel]);
        return;
      }
      if (ev.key === "Escape") { hideAc(state); return; }
    }
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      doSend();
    }
  });
  return node;
}

function autosize(t) {
  t.style.height = "auto";
  t.style.height = Math.min(t.scrollHeight, 200) + "px";
}

function hideAc(state) {
  state.ac.hidden = true;
  state.items = [];
}

// What to offer for the word being typed: people after @, channels after #, the app's commands
// after a leading /.
function suggest(state) {
  const t = state.textarea;
  const upto = t.value.slice(0, t.selectionStart);
  const cmd = /^\/([\w-]*)$/.exec(upto);
  const word = /(^|\s)([@#])([\w.\-]*)$/.exec(upto);
  let items = [];
  let title = "";
  if (cmd) {
    const q = cmd[1].toLowerCase();
    items = S.commands.filter((c) => c.command.slice(1).toLowerCase().startsWith(q)).map((c) => ({
      label: c.command, hint: [c.usage_hint, c.description].filter(Boolean).join("  ·  "), insert: c.command + " ", start: 0,
    }));
    title = `Commands of ${S.appName}`;
  } else if (word) {
    const q = word[3].toLowerCase();
    const start = upto.length - word[3].length - 1;
    if (word[2] === "@") {
      items = S.users.filter((u) => !u.deleted && (u.name.toLowerCase().startsWith(q) || (u.real_name || "").toLowerCase().split(" ").some((p) => p.startsWith(q))))
        .map((u) => ({ label: u.real_name || u.name, hint: "@" + u.name + (u.id === S.info.bot_user_id ? "  ·  APP" : ""), insert: "@" + u.name + " ", start }));
      for (const b of ["here", "channel", "everyone"]) if (b.startsWith(q)) items.push({ label: "@" + b, hint: "Notify everyone", insert: "@" + b + " ", start });
      title = "People";
    } else {
      items = S.channels.filter((c) => !c.is_im && c.name.toLowerCase().startsWith(q)).map((c) => ({ label: "#" + c.name, hint: c.topic && c.topic.value, insert: "#" + c.name + " ", start }));
      title = "Channels";
    }
  }
  if (!items.length) return hideAc(state);
  state.items = items.slice(0, 12);
  state.sel = Math.min(state.sel, state.items.length - 1);
  state.title = title;
  drawAc(state);
}

function drawAc(state) {
  const ac = state.ac;
  ac.replaceChildren(el("div", { class: "ac-title" }, state.title));
  state.items.forEach((item, i) => {
    ac.append(el("div", { class: `ac-item${i === state.sel ? " sel" : ""}`, "data-testid": "ac-item", onmousedown: (ev) => { ev.preventDefault(); pick(state, item); } },
      el("b", {}, item.label), el("span", { class: "hint" }, item.hint || "")));
  });
  ac.hidden = false;
}

function pick(state, item) {
  const t = state.textarea;
  const end = t.selectionStart;
  t.value = t.value.slice(0, item.start) + item.insert + t.value.slice(end);
  const caret = item.start + item.insert.length;
  t.setSelectionRange(caret, caret);
  hideAc(state);
  t.focus();
  t.dispatchEvent(new Event("input"));
}

// What a person types, in Slack's markup: @name → <@U…>, #name → <#C…>, @here → <!here>.
function encodeMentions(text) {
  const names = S.users.map((u) => u.name).sort((a, b) => b.length - a.length);
  let out = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  out = out.replace(/(^|[\s(])@(here|channel|everyone)\b/g, "$1<!$2>");
  out = out.replace(/(^|[\s(])@([\w.\-]+)/g, (m, pre, name) => {
    const found = names.find((n) => name.toLowerCase().startsWith(n.toLowerCase()) && (name.length === n.length || !/[\w]/.test(name[n.length])));
    if (!found) return m;
    const u = S.users.find((x) => x.name === found);
    return `${pre}<@${u.id}>${name.slice(found.length)}`;
  });
  out = out.replace(/(^|[\s(])#([\w\-]+)/g, (m, pre, name) => {
    const c = S.channels.find((x) => !x.is_im && x.name === name);
    return c ? `${pre}<#${c.id}>` : m;
  });
  return out;
}

// Where a message or a command goes: the channel's id, or the app (its DM) by its user id.
function target() {
  return S.current === "dm:app" ? S.info.bot_user_id : S.current;
}

async function sendMessage(text, threadTs) {
  const channel = target();
  if (!threadTs && text.startsWith("/")) {
    const [command, ...rest] = text.split(/\s+/);
    const known = S.commands.find((c) => c.command === command);
    if (!known) {
      localNotice(`${command} is not a valid command. In Slack, all messages that start with the "/" character are interpreted as commands.`);
      return;
    }
    const args = text.slice(command.length).trim();
    const reply = await post("/commands", { user: S.me, channel, command, text: args });
    if (!reply.ok) localNotice(`${command} failed: ${reply.error}`);
    else if (reply.error) localNotice(`${command} failed with the error "${reply.error}"`);
    void rest;
    refresh();
    return;
  }
  const body = { user: S.me, channel, text: encodeMentions(text) };
  if (threadTs) body.thread_ts = threadTs;
  const reply = await post("/messages", body);
  if (!reply.ok) toast(`Not sent: ${reply.error}`);
  else if (S.current === "dm:app" && reply.channel) S.current = reply.channel;
  refresh();
}

// Slackbot-style notices the client itself shows (not from the app), only to this person.
const localNotices = [];
function localNotice(text) {
  localNotices.push({ ts: (Date.now() / 1000).toFixed(6), text, channel: S.current, user: "USLACKBOT" });
  render();
}

// ---------- navigation ----------

function openChannel(id) {
  S.current = id;
  S.thread = null;
  localStorage.setItem("sandbox.current", id);
  markRead();
  render();
  refresh();
}

function openThread(channel, ts) {
  S.thread = { channel, ts };
  S.threadMessages = [];
  render();
  refresh();
}

function conversations() {
  const me = S.me;
  const chans = S.channels.filter((c) => !c.is_im && !c.is_archived && (c.members || []).includes(me)).sort((a, b) => a.name.localeCompare(b.name));
  const dm = S.channels.find((c) => c.is_im && c.user === me);
  return { chans, dm };
}

function readKey() {
  return `sandbox.read.${S.me}`;
}
function markRead() {
  const c = S.channels.find((x) => x.id === S.current);
  if (!c || !c.latest_ts) return;
  S.lastRead[c.id] = c.latest_ts;
  localStorage.setItem(readKey(), JSON.stringify(S.lastRead));
}
function isUnread(c) {
  if (!c.latest_ts || c.id === S.current) return false;
  const seen = S.lastRead[c.id];
  return !seen || parseFloat(c.latest_ts) > parseFloat(seen);
}

// ---------- rendering ----------

function render() {
  if (!S.info) return;
  document.getElementById("team-name").textContent = S.info.team_name || "Sandbox";
  document.title = `${currentTitle()} — ${S.info.team_name || "Sandbox"} (sandbox)`;
  renderSidebar();
  renderMain();
  renderThread();
  renderDev();
  renderModal();
}

function currentTitle() {
  if (S.current === "dm:app" || (channelById(S.current) || {}).is_im) return S.appName;
  const c = channelById(S.current);
  return c ? "#" + c.name : "";
}

function renderSidebar() {
  const { chans, dm } = conversations();
  const list = document.getElementById("channel-list");
  list.replaceChildren(...chans.map((c) => {
    const unread = isUnread(c);
    return el("li", { class: `${c.id === S.current ? "active" : ""}${unread ? " unread" : ""}`, "data-channel": c.name, "data-unread": unread ? "true" : "false", onclick: () => openChannel(c.id) },
      el("span", { class: "sigil" }, c.is_private ? "🔒" : "#"), el("span", { class: "name" }, c.name));
  }));
  const dms = document.getElementById("dm-list");
  const dmId = dm ? dm.id : "dm:app";
  const active = S.current === dmId || (S.current === "dm:app");
  const unread = dm ? isUnread(dm) : false;
  dms.replaceChildren(el("li", { class: `${active ? "active" : ""}${unread ? " unread" : ""}`, "data-channel": "app-dm", "data-unread": unread ? "true" : "false", onclick: () => openChannel(dmId) },
    el("span", { class: "presence" }), el("span", { class: "name" }, S.appName), el("span", { class: "app-badge" }, "APP")));
}

function renderMain() {
  const header = document.getElementById("channel-header");
  const c = channelById(S.current);
  const isDm = S.current === "dm:app" || (c && c.is_im);
  header.replaceChildren(
    el("span", { class: "title" }, isDm ? S.appName : `${c && c.is_private ? "🔒 " : "# "}${c ? c.name : ""}`),
    el("span", { class: "topic" }, isDm ? "This conversation is with the app under test" : c && c.topic ? c.topic.value : ""),
  );
  const box = document.getElementById("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const list = [...S.messages, ...S.ephemerals.filter((e) => !S.dismissed.has(e.ts)), ...localNotices.filter((n) => n.channel === S.current).map((n) => ({ ...n, ephemeral: true }))]
    .sort((a, b) => parseFloat(a.ts) - parseFloat(b.ts));
  const key = JSON.stringify([S.current, S.me, list, S.channels.length]);
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.replaceChildren();
    if (!list.length) box.append(el("div", { class: "empty" }, isDm ? `This is the very beginning of your direct messages with ${S.appName}.` : `This is the very beginning of the #${c ? c.name : ""} channel.`));
    box.append(messageList(list, c && !c.is_im ? c.id : target(), false));
    if (atBottom || box.dataset.channel !== S.current) box.scrollTop = box.scrollHeight;
    box.dataset.channel = S.current;
  }
  const wrap = document.getElementById("main-composer");
  const node = composer("main", `Message ${isDm ? S.appName : "#" + (c ? c.name : "")}`, (text) => sendMessage(text));
  if (node.parentNode !== wrap) wrap.replaceChildren(node);
}

function renderThread() {
  const pane = document.getElementById("thread");
  if (!S.thread) {
    pane.hidden = true;
    return;
  }
  pane.hidden = false;
  const c = channelById(S.thread.channel);
  const key = JSON.stringify([S.thread, S.me, S.threadMessages]);
  if (pane.dataset.key === key) return;
  pane.dataset.key = key;
  const [parent, ...replies] = S.threadMessages;
  const head = el("div", { class: "pane-header" }, el("span", { class: "title" }, "Thread"), el("span", { class: "sub" }, c && !c.is_im ? "#" + c.name : S.appName),
    el("button", { class: "close", type: "button", "aria-label": "Close thread", onclick: () => { S.thread = null; render(); } }, "×"));
  const box = el("div", { class: "messages thread-messages" });
  if (parent) {
    box.append(messageList([parent], S.thread.channel, true));
    if (replies.length) box.append(el("div", { class: "replies-divider" }, `${replies.length} ${replies.length === 1 ? "reply" : "replies"}`));
    box.append(messageList(replies, S.thread.channel, true));
  }
  // The composer stays in the DOM across redraws: detaching it, even to put it straight back,
  // takes the focus away, and a reply arriving while someone types would swallow their Enter.
  let wrap = pane.querySelector(":scope > .composer-wrap");
  if (!wrap) wrap = el("div", { class: "composer-wrap" });
  const node = composer("thread", "Reply…", (text) => sendMessage(text, S.thread.ts));
  if (node.parentNode !== wrap) wrap.replaceChildren(node);
  for (const child of [...pane.children]) if (child !== wrap) child.remove();
  if (wrap.parentNode !== pane) pane.append(wrap);
  pane.insertBefore(head, wrap);
  pane.insertBefore(box, wrap);
  box.scrollTop = box.scrollHeight;
}

// ---------- developer panel ----------

function jsonHtml(v) {
  const text = JSON.stringify(v, null, 2);
  if (text === undefined) return "";
  return esc(text).replace(/(&quot;(?:[^&]|&(?!quot;))*?&quot;)(\s*:)?|\b(true|false|null)\b|-?\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b/g, (m, str, colon, lit) => {
    if (str) return colon ? `<span class="k">${str}</span>${colon}` : `<span class="s">${str}</span>`;
    if (lit) return `<span class="b">${m}</span>`;
    return `<span class="n">${m}</span>`;
  });
}
function jsonNode(v) {
  return htmlNode("pre", "json", jsonHtml(v));
}
function clock(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function renderDev() {
  const pane = document.getElementById("dev");
  document.getElementById("dev-toggle").setAttribute("aria-pressed", S.dev ? "true" : "false");
  if (!S.dev) {
    pane.hidden = true;
    return;
  }
  pane.hidden = false;
  const key = JSON.stringify([S.devTab, S.devOpen, S.inspected, S.devTab === "calls" ? S.calls : S.devTab === "deliveries" ? S.deliveries : [S.faults, S.rateLimits]]);
  if (pane.dataset.key === key) return;
  pane.dataset.key = key;
  const content = pane.querySelector(".dev-content");
  const scroll = content ? content.scrollTop : 0;
  const tab = (id, label) => el("button", { class: S.devTab === id ? "on" : "", type: "button", "data-testid": `dev-tab-${id}`, onclick: () => { S.devTab = id; render(); refresh(); } }, label);
  const tabs = el("div", { class: "dev-tabs" }, tab("calls", "Web API calls"), tab("deliveries", "Deliveries"), tab("faults", "Faults"), tab("message", "Message JSON"),
    el("button", { type: "button", style: "margin-left:auto", "aria-label": "Close developer panel", onclick: () => { S.dev = false; render(); } }, "×"));
  const body = el("div", { class: "dev-content" });
  if (S.devTab === "calls") devCalls(body);
  else if (S.devTab === "deliveries") devDeliveries(body);
  else if (S.devTab === "faults") devFaults(body);
  else body.append(S.inspected ? el("div", { class: "dev-section" }, el("h3", {}, `Message ${S.inspected.ts}`), jsonNode(S.inspected)) : el("div", { class: "empty" }, "Hover a message and press { } to see its JSON."));
  pane.replaceChildren(el("div", { class: "pane-header" }, el("span", { class: "title" }, "Developer")), tabs, body);
  body.scrollTop = scroll;
}

function toggleRow(key) {
  S.devOpen[key] = !S.devOpen[key];
  render();
}

function devCalls(body) {
  if (!S.calls.length) body.append(el("div", { class: "empty" }, "No Web API calls yet."));
  for (const c of [...S.calls].reverse()) {
    const key = `call:${c.at_ms}:${c.method}:${c.duration_ms}`;
    body.append(el("div", { class: "log-row", "data-testid": "api-call", onclick: () => toggleRow(key) },
      el("span", { class: "t" }, clock(c.at_ms || c.at * 1000)), el("span", { class: "m" }, c.method),
      el("span", { class: c.ok ? "ok" : "err" }, c.ok ? "ok" : c.error || `HTTP ${c.status}`), el("span", { class: "ms" }, `${(c.duration_ms || 0).toFixed(1)} ms`)));
    if (S.devOpen[key]) {
      body.append(el("div", { class: "log-detail" }, el("h4", {}, "Arguments"), jsonNode(c.args), el("h4", {}, `Reply (HTTP ${c.status})`), jsonNode(c.response)));
    }
  }
}

function devDeliveries(body) {
  if (!S.deliveries.length) body.append(el("div", { class: "empty" }, "Nothing delivered to the app yet."));
  for (const d of [...S.deliveries].reverse()) {
    const key = `delivery:${d.id}`;
    const last = d.attempts[d.attempts.length - 1];
    const transport = last ? last.transport : "";
    const label = d.kind === "event" ? `${d.name}` : d.name;
    body.append(el("div", { class: "log-row", "data-testid": "delivery", onclick: () => toggleRow(key) },
      el("span", { class: "t" }, clock(d.created_ms)), el("span", { class: "m" }, `${d.kind} · ${label}`),
      el("span", { class: "ms" }, transport === "socket_mode" ? "socket" : transport),
      el("span", { class: d.outcome === "acked" ? "ok" : d.outcome === "pending" ? "ms" : "err" }, d.outcome),
      el("span", { class: "ms" }, last ? `${last.duration_ms.toFixed(1)} ms` : "")));
    if (S.devOpen[key]) {
      const detail = el("div", { class: "log-detail" });
      detail.append(el("h4", {}, "Attempts"));
      for (const a of d.attempts) {
        detail.append(el("div", { class: "fault-item" }, `#${a.retry_num} ${a.transport} ${clock(a.at_ms)} → ${a.result}${a.status ? " " + a.status : ""} in ${a.duration_ms.toFixed(1)} ms`));
      }
      if (transport === "socket_mode" || (!transport && S.info.socket_mode)) {
        detail.append(el("h4", {}, "Socket Mode envelope"), jsonNode({ type: d.envelope_type, payload: d.payload, accepts_response_payload: d.kind !== "event", retry_attempt: last ? last.retry_num : 0 }));
      } else {
        detail.append(el("h4", {}, d.kind === "event" ? "Events API request body" : "Request (form fields)"), jsonNode(d.payload));
      }
      if (d.ack_body !== undefined) detail.append(el("h4", {}, "Ack"), jsonNode(d.ack_body));
      body.append(detail);
    }
  }
}

const QUICK_FAULTS = [
  ["Web API: 429 rate limited", { target: "web_api", fault: "rate_limited", retry_after: 2 }],
  ["Web API: 500 server error", { target: "web_api", fault: "server_error", status: 500 }],
  ["Web API: slow (2 s)", { target: "web_api", fault: "slow", delay_ms: 2000 }],
  ["Web API: connection reset", { target: "web_api", fault: "reset" }],
  ["Events: duplicate", { target: "events", fault: "duplicate" }],
  ["Events: drop first attempt", { target: "events", fault: "drop" }],
  ["Socket Mode: duplicate envelope", { target: "socket", fault: "duplicate" }],
  ["Socket Mode: drop connection", { target: "socket", fault: "drop" }],
];

function sameRule(rule, want) {
  return Object.entries(want).every(([k, v]) => rule[k] === v) && !rule.method && rule.times == null;
}

function devFaults(body) {
  const limits = S.rateLimits || {};
  const rl = el("div", { class: "dev-section" }, el("h3", {}, "Rate limits"));
  rl.append(switchRow("Slack's rate limits", "Tiers per method, chat.postMessage 1/s per channel", limits.enabled !== false, async (on) => {
    await api("PUT", "/rate_limits", { ...limits, enabled: on });
    refresh();
  }));
  body.append(rl);
  const quick = el("div", { class: "dev-section" }, el("h3", {}, "Faults (until switched off)"));
  for (const [label, rule] of QUICK_FAULTS) {
    const existing = S.faults.find((f) => sameRule(f, rule));
    quick.append(switchRow(label, "", !!existing, async (on) => {
      if (on) await post("/faults", rule);
      else if (existing) await api("DELETE", `/faults/${existing.id}`);
      refresh();
    }));
  }
  body.append(quick);
  const form = el("div", { class: "dev-section" }, el("h3", {}, "Add a rule"));
  const targetSel = el("select", { class: "select" }, ...["web_api", "events", "socket"].map((t) => el("option", { value: t }, t)));
  const faultSel = el("select", { class: "select" }, ...["rate_limited", "server_error", "slow", "reset", "duplicate", "drop"].map((t) => el("option", { value: t }, t)));
  const method = el("input", { class: "input", placeholder: "method (e.g. chat.postMessage)", size: 22 });
  const times = el("input", { class: "input", placeholder: "times", type: "number", min: 1, style: "width:70px" });
  const add = el("button", { class: "btn", type: "button", onclick: async () => {
    const rule = { target: targetSel.value, fault: faultSel.value };
    if (method.value.trim()) rule[targetSel.value === "web_api" ? "method" : "kind"] = method.value.trim();
    if (times.value) rule.times = Number(times.value);
    if (rule.fault === "rate_limited") rule.retry_after = 2;
    if (rule.fault === "slow") rule.delay_ms = 2000;
    const reply = await post("/faults", rule);
    if (!reply.ok) toast(`Not added: ${reply.error}`);
    refresh();
  } }, "Add");
  form.append(el("div", { class: "fault-form" }, targetSel, faultSel, method, times, add));
  body.append(form);
  const list = el("div", { class: "dev-section" }, el("h3", {}, `Rules in force (${S.faults.length})`));
  for (const f of S.faults) {
    const { id, ...rest } = f;
    list.append(el("div", { class: "fault-item" }, el("span", {}, `#${id} ${JSON.stringify(rest)}`), el("button", { class: "btn", type: "button", onclick: async () => { await api("DELETE", `/faults/${id}`); refresh(); } }, "Remove")));
  }
  if (S.faults.length) list.append(el("button", { class: "btn", type: "button", onclick: async () => { await api("DELETE", "/faults"); refresh(); } }, "Clear all"));
  body.append(list);
  const sock = el("div", { class: "dev-section" }, el("h3", {}, "Socket Mode"));
  sock.append(el("div", { class: "actions" },
    el("button", { class: "btn", type: "button", onclick: async () => { await post("/socket/disconnect", { reason: "refresh_requested" }); toast("Sent disconnect (refresh_requested)"); } }, "Send disconnect"),
    el("button", { class: "btn", type: "button", onclick: async () => { await post("/socket/drop", {}); toast("Dropped every connection"); } }, "Drop connections")));
  body.append(sock);
}

function switchRow(label, desc, on, change) {
  const input = el("input", { type: "checkbox", "aria-label": label });
  input.checked = on;
  input.addEventListener("change", () => change(input.checked));
  return el("label", { class: "switch-row" }, el("span", {}, label, desc ? el("div", { class: "desc" }, desc) : null), el("span", { class: "toggle" }, input, el("span", {})));
}

// ---------- reading ----------

let refreshing = false;
let again = false;

async function refresh() {
  if (!S.info) return;
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    const me = encodeURIComponent(S.me);
    const [chans, views] = await Promise.all([get("/channels"), get(`/views?user=${me}`)]);
    S.channels = chans.channels || [];
    S.views = (views.views || []).filter((v) => v.type === "modal");
    // The app's DM exists once something was said in it.
    const dm = S.channels.find((c) => c.is_im && c.user === S.me);
    if (S.current === "dm:app" && dm) S.current = dm.id;
    const current = channelById(S.current);
    if (S.current !== "dm:app" && (!current || (!current.is_im && !(current.members || []).includes(S.me)) || (current.is_im && current.user !== S.me))) {
      const { chans: mine } = conversations();
      S.current = mine.length ? mine[0].id : "dm:app";
    }
    const reads = [];
    if (S.current === "dm:app") {
      S.messages = [];
      S.ephemerals = [];
    } else {
      const id = encodeURIComponent(S.current);
      reads.push(get(`/channels/${id}/messages`).then((r) => (S.messages = r.messages || [])));
      reads.push(get(`/ephemerals?user=${me}&channel=${id}`).then((r) => (S.ephemerals = (r.ephemerals || []).map((e) => ({ ...e.message, ephemeral: true })))));
    }
    if (S.thread) {
      reads.push(get(`/channels/${encodeURIComponent(S.thread.channel)}/threads/${encodeURIComponent(S.thread.ts)}`).then((r) => (S.threadMessages = r.messages || [])));
    }
    if (S.dev) {
      if (S.devTab === "calls") reads.push(get("/api_calls?last=200").then((r) => (S.calls = r.calls || [])));
      if (S.devTab === "deliveries") reads.push(get("/deliveries?last=200").then((r) => (S.deliveries = r.deliveries || [])));
      if (S.devTab === "faults") {
        reads.push(get("/faults").then((r) => (S.faults = r.faults || [])));
        reads.push(get("/rate_limits").then((r) => (S.rateLimits = r.rate_limits || null)));
      }
    }
    await Promise.all(reads);
    markRead();
    render();
  } catch (err) {
    console.error(err);
  } finally {
    refreshing = false;
    if (again) { again = false; refresh(); }
  }
}

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource(`${API}/changes`);
  source.addEventListener("change", () => refresh());
  source.onopen = () => { live.className = "live"; live.title = "Live: following changes"; };
  source.onerror = () => { live.className = "live off"; live.title = "Reconnecting…"; };
}

function setMe(id) {
  S.me = id;
  localStorage.setItem("sandbox.me", id);
  S.lastRead = JSON.parse(localStorage.getItem(readKey()) || "{}");
  S.thread = null;
  S.modalKey = null;
  S.dismissed = new Set();
  localNotices.length = 0;
  for (const k of Object.keys(composers)) delete composers[k];
  document.getElementById("main-composer").replaceChildren();
  refresh();
}

async function start() {
  const [info, users, app] = await Promise.all([get("/info"), get("/users"), get("/app")]);
  S.info = info;
  S.users = users.users || [];
  S.usersById = Object.fromEntries(S.users.map((u) => [u.id, u]));
  const manifest = (app && app.manifest) || {};
  S.commands = ((manifest.features || {}).slash_commands || []).map((c) => ({ command: c.command, description: c.description, usage_hint: c.usage_hint }));
  const bot = S.usersById[info.bot_user_id];
  S.appName = ((manifest.features || {}).bot_user || {}).display_name || (manifest.display_information || {}).name || (bot && bot.real_name) || "App";
  const people = peopleOptions();
  const params = new URLSearchParams(location.search);
  const wanted = params.get("user") || localStorage.getItem("sandbox.me");
  const found = people.find((u) => u.id === wanted || u.name === wanted) || people.find((u) => !u.is_bot) || people[0];
  const select = document.getElementById("me");
  for (const u of people) select.append(el("option", { value: u.id }, `${u.real_name || u.name} (@${u.name})${u.is_bot ? " · bot" : ""}`));
  select.value = found ? found.id : "";
  select.addEventListener("change", () => setMe(select.value));
  const wantChannel = params.get("channel");
  S.current = localStorage.getItem("sandbox.current");
  document.getElementById("dev-toggle").addEventListener("click", () => { S.dev = !S.dev; render(); refresh(); });
  document.addEventListener("click", (ev) => {
    const link = ev.target.closest && ev.target.closest(".channel-link");
    if (link) { ev.preventDefault(); openChannel(link.dataset.channel); }
  });
  S.me = found ? found.id : null;
  S.lastRead = JSON.parse(localStorage.getItem(readKey()) || "{}");
  const chans = await get("/channels");
  S.channels = chans.channels || [];
  if (wantChannel) {
    const c = S.channels.find((x) => x.name === wantChannel.replace(/^#/, "") || x.id === wantChannel);
    if (c) S.current = c.id;
  }
  await refresh();
  listen();
}

start();
