// minipush operator console. Plain JavaScript, no build step, no third-party code: every
// page is drawn from the operator API (/v1/admin/...) with the token typed once and kept
// in this tab's sessionStorage (gone when the tab closes). Text from the API is only ever
// set as textContent (h() below), never parsed as HTML.
'use strict';

const TOKEN_KEY = 'minipush.operatorToken';
const STATUSES = ['draft', 'scheduled', 'planning', 'sending', 'paused', 'done', 'cancelled'];
const OUTCOMES = ['failed', 'sent', 'no_grant', 'skipped', 'unknown'];
const AUDIENCE_PAGE = 5000; // the audience route's page limit (admin.MaxAudiencePage)
const main = document.getElementById('main');
let stopPage = () => {}; // cancels the current page's polling when the route changes
let errcodes = null;

// h builds an element: attrs are properties (on* are listeners), children strings or nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function toast(msg) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 3000);
}

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// api calls the operator API. A 401 logs out: the token is wrong or was rotated.
async function api(method, path, body, contentType) {
  const headers = { Authorization: 'Bearer ' + sessionStorage.getItem(TOKEN_KEY) };
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType || 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!resp.ok) {
    if (resp.status === 401 && location.hash !== '#/login') {
      sessionStorage.removeItem(TOKEN_KEY);
      location.hash = '#/login';
    }
    throw new APIError(resp.status, data && data.code, (data && data.message) || resp.statusText);
  }
  return data;
}

function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString();
}

function badge(status) { return h('span', { class: 'badge ' + status, dataset: { status } }, status); }

function errorBox(err) { return h('p', { class: 'error', role: 'alert' }, err.message || String(err)); }

async function apps() {
  if (!apps.cache) apps.cache = (await api('GET', '/v1/admin/apps')).apps;
  return apps.cache;
}

async function meanings() {
  if (!errcodes) {
    const resp = await fetch('errcodes.json');
    errcodes = {};
    for (const r of (await resp.json()).reasons) errcodes[r.reason] = r;
  }
  return errcodes;
}

// ---- routing ---------------------------------------------------------------------------

const routes = [
  [/^#\/login$/, loginPage],
  [/^#\/campaigns$/, campaignsPage],
  [/^#\/new$/, () => campaignForm(null)],
  [/^#\/edit\/([\w-]+)$/, (m) => campaignForm(m[1])],
  [/^#\/campaign\/([\w-]+)$/, (m) => campaignPage(m[1])],
  [/^#\/grants$/, grantsPage],
];

function route() {
  stopPage();
  stopPage = () => {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token && location.hash !== '#/login') { location.hash = '#/login'; return; }
  if (token && (location.hash === '' || location.hash === '#/')) { location.hash = '#/campaigns'; return; }
  document.getElementById('nav').hidden = !token;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.getAttribute('href') === location.hash);
  for (const [re, page] of routes) {
    const m = location.hash.match(re);
    if (m) {
      main.replaceChildren();
      Promise.resolve(page(m)).catch((err) => main.append(errorBox(err)));
      return;
    }
  }
  location.hash = token ? '#/campaigns' : '#/login';
}

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => {
  document.getElementById('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    apps.cache = null;
    location.hash = '#/login';
  });
  route();
});

// ---- login -----------------------------------------------------------------------------

function loginPage() {
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', placeholder: 'operator token' });
  const msg = h('p', { class: 'error', id: 'login-error' });
  const form = h('form', { class: 'card', onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    apps.cache = null;
    try {
      await apps(); // proves the token
      location.hash = '#/campaigns';
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      msg.textContent = err.status === 401 ? 'The API refused this token.' : err.message;
    }
  } },
  h('label', { for: 'token' }, 'Operator token (kept in this tab only)'), input,
  h('p', {}, h('button', { class: 'primary', id: 'login', type: 'submit' }, 'Log in')), msg);
  main.append(h('h1', {}, 'Log in'), form);
  input.focus();
}

// ---- campaigns list --------------------------------------------------------------------

async function campaignsPage() {
  const select = h('select', { id: 'status-filter' }, h('option', { value: '' }, 'every status'),
    STATUSES.map((s) => h('option', { value: s }, s)));
  select.value = sessionStorage.getItem('minipush.filter') || '';
  const text = h('input', { id: 'text-filter', type: 'search', placeholder: 'name, app or id' });
  const body = h('tbody');
  const table = h('table', { id: 'campaigns' },
    h('thead', {}, h('tr', {}, ['Name', 'App', 'Kind', 'Audience', 'Status', 'Next run', 'Created'].map((c) => h('th', {}, c)))), body);
  main.append(h('h1', {}, 'Campaigns'),
    h('div', { class: 'row card' }, h('div', {}, h('label', { for: 'status-filter' }, 'Status'), select),
      h('div', {}, h('label', { for: 'text-filter' }, 'Filter'), text),
      h('div', { class: 'narrow' }, h('a', { href: '#/new' }, h('button', { class: 'primary', type: 'button' }, 'New campaign')))),
    table);
  let all = [];
  const draw = () => {
    const q = text.value.trim().toLowerCase();
    const rows = all.filter((c) => !q || [c.name, c.appId, c.id].some((v) => v.toLowerCase().includes(q)));
    body.replaceChildren(...rows.map((c) => h('tr', { dataset: { id: c.id } },
      h('td', {}, h('a', { href: '#/campaign/' + c.id }, c.name)), h('td', {}, c.appId), h('td', {}, c.message.kind),
      h('td', {}, c.audience.kind), h('td', {}, badge(c.status)), h('td', {}, fmtTime(c.nextRunAt)), h('td', {}, fmtTime(c.createdAt)))));
    if (!rows.length) body.append(h('tr', {}, h('td', { colSpan: 7, class: 'muted' }, 'No campaigns.')));
  };
  const load = async () => {
    sessionStorage.setItem('minipush.filter', select.value);
    const statuses = select.value ? [select.value] : STATUSES;
    const pages = await Promise.all(statuses.map((s) => api('GET', '/v1/admin/campaigns?limit=100&status=' + s)));
    all = pages.flatMap((p) => p.campaigns).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    draw();
  };
  select.addEventListener('change', () => load().catch((err) => main.append(errorBox(err))));
  text.addEventListener('input', draw);
  await load();
}

// ---- create / edit ---------------------------------------------------------------------

// templatesOf lists an app's templates from the registry route, or null when the
// deployment has none (404): the form then offers free key/value fields.
async function templatesOf(appId) {
  try {
    const data = await api('GET', '/v1/admin/apps/' + encodeURIComponent(appId) + '/templates');
    const list = Array.isArray(data) ? data : (data.templates || []);
    return list.map((t) => ({
      id: t.templateId || t.priTmplId || t.id,
      title: t.title || t.name || t.templateId || t.id,
      kind: t.kind,
      fields: (t.fields || t.keywords || []).map((f) => (typeof f === 'string' ? { key: f, name: f } : { key: f.key || f.name, name: f.name || f.label || f.key, rule: f.rule })),
    }));
  } catch (err) {
    if (err.status === 404 || err.status === 405) return null;
    throw err;
  }
}

async function campaignForm(id) {
  const existing = id ? await api('GET', '/v1/admin/campaigns/' + id) : null;
  const appList = await apps();
  const el = {};
  const field = (name, label, input) => { el[name] = input; input.id = input.id || name; return h('div', {}, h('label', { for: input.id }, label), input); };
  el.app = h('select', { id: 'app', disabled: !!existing }, appList.map((a) => h('option', { value: a }, a)));
  el.kind = h('select', { id: 'kind' }, h('option', { value: 'subscribe' }, 'subscribe message'), h('option', { value: 'template' }, 'template message (formId / prepay)'));
  el.template = h('input', { id: 'template', list: 'template-list', placeholder: 'template id' });
  const datalist = h('datalist', { id: 'template-list' });
  const fieldsBox = h('div', { id: 'fields' });
  const registryNote = h('p', { class: 'muted', id: 'registry-note' });
  const validation = h('p', { id: 'validation', role: 'status' });
  const preview = h('div', { class: 'preview', id: 'preview' });
  const segBox = h('div', { id: 'segment-box' });
  let templates = null;
  let rows = []; // [{key, value, color}] inputs

  const kv = (key = '', value = '', color = '') => {
    const r = { key: h('input', { class: 'field-key', placeholder: 'key, e.g. thing1', value: key }),
      value: h('input', { class: 'field-value', placeholder: 'value', value }),
      color: h('input', { class: 'field-color', placeholder: '#173177', value: color }) };
    r.el = h('div', { class: 'kv' }, r.key, r.value, r.color,
      h('button', { type: 'button', title: 'remove', onclick: () => { rows = rows.filter((x) => x !== r); r.el.remove(); changed(); } }, '×'));
    rows.push(r);
    fieldsBox.append(r.el);
    return r;
  };
  const currentTemplate = () => templates && templates.find((t) => t.id === el.template.value.trim());
  const drawFields = (data) => {
    const keep = data || Object.fromEntries(rows.map((r) => [r.key.value, { value: r.value.value, color: r.color.value }]));
    fieldsBox.replaceChildren();
    rows = [];
    const t = currentTemplate();
    if (t) {
      for (const f of t.fields) {
        const r = kv(f.key, (keep[f.key] || {}).value || '', (keep[f.key] || {}).color || '');
        r.key.readOnly = true;
        r.value.placeholder = f.name + (f.rule ? ' (' + f.rule + ')' : '');
      }
    } else {
      for (const [k, v] of Object.entries(keep)) if (k) kv(k, v.value, v.color);
      if (!rows.length) kv();
    }
  };
  const loadTemplates = async () => {
    templates = await templatesOf(el.app.value);
    datalist.replaceChildren(...(templates || []).map((t) => h('option', { value: t.id }, t.title)));
    registryNote.textContent = templates ? templates.length + ' templates registered for this app: pick one to get its fields.'
      : 'No template registry for this app: type the template id and its data keys.';
  };

  el.name = h('input', { id: 'name', maxLength: 100 });
  el.page = h('input', { id: 'page', placeholder: 'pages/index/index?from=push' });
  el.emphasis = h('input', { id: 'emphasis', placeholder: 'keyword1.DATA (template messages)' });
  el.state = h('select', { id: 'state' }, ['', 'formal', 'trial', 'developer'].map((s) => h('option', { value: s }, s || '(default: formal)')));
  el.audience = h('select', { id: 'audience' }, h('option', { value: 'list' }, 'a list of openids (CSV upload)'),
    h('option', { value: 'segment' }, 'a segment of users'), h('option', { value: 'reachable' }, 'every user holding a grant'));
  el.regions = h('input', { id: 'regions', placeholder: 'sh, bj' });
  el.industries = h('input', { id: 'industries', placeholder: 'retail' });
  el.tags = h('input', { id: 'tags', placeholder: 'vip (users holding every tag)' });
  segBox.append(h('div', { class: 'row' }, field('regions', 'Regions', el.regions), field('industries', 'Industries', el.industries), field('tags', 'Tags', el.tags)));
  el.skip = h('input', { id: 'skip-opted-out', type: 'checkbox', checked: true });
  el.transactional = h('input', { id: 'transactional', type: 'checkbox' });
  el.holdout = h('input', { id: 'holdout', type: 'number', min: 0, max: 50, value: 0 });
  el.retry = h('input', { id: 'retry-budget', type: 'number', min: 1, max: 10, value: 5 });
  const save = h('button', { class: 'primary', id: 'save', type: 'submit' }, existing ? 'Save draft' : 'Create draft');
  const saveMsg = h('p', { id: 'save-error', class: 'error' });

  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const body = () => {
    const data = {};
    for (const r of rows) {
      const k = r.key.value.trim();
      if (!k) continue;
      data[k] = { value: r.value.value };
      if (r.color.value.trim()) data[k].color = r.color.value.trim();
    }
    const message = { kind: el.kind.value, templateId: el.template.value.trim(), data };
    if (el.page.value.trim()) message.page = el.page.value.trim();
    if (el.kind.value === 'template' && el.emphasis.value.trim()) message.emphasisKeyword = el.emphasis.value.trim();
    if (el.kind.value === 'subscribe' && el.state.value) message.miniprogramState = el.state.value;
    const audience = { kind: el.audience.value };
    if (audience.kind === 'segment') {
      audience.segment = {};
      for (const k of ['regions', 'industries', 'tags']) if (list(el[k].value).length) audience.segment[k] = list(el[k].value);
    }
    return { appId: el.app.value, name: el.name.value, message, audience,
      policy: { skipOptedOut: el.skip.checked, transactional: el.transactional.checked, holdoutPercent: Number(el.holdout.value), retryBudget: Number(el.retry.value) } };
  };
  const drawPreview = () => {
    const b = body();
    const t = currentTemplate();
    const names = Object.fromEntries(((t && t.fields) || []).map((f) => [f.key, f.name]));
    const emph = b.message.emphasisKeyword && b.message.data[b.message.emphasisKeyword.replace(/\.DATA$/, '')];
    preview.replaceChildren(h('div', { class: 'msgcard' },
      h('div', { class: 'title' }, (t && t.title) || b.name || 'Message'),
      emph ? h('div', { class: 'emph' }, emph.value) : null,
      h('dl', {}, Object.entries(b.message.data).flatMap(([k, v]) => {
        const dd = h('dd', {}, v.value);
        dd.style.color = v.color || ''; // CSSOM, which the page's CSP allows (a style attribute it would not)
        return [h('dt', {}, names[k] || k), dd];
      })),
      h('div', { class: 'foot' }, h('span', {}, b.message.page ? 'Open the mini-program' : 'No page'), h('span', {}, '›'))));
  };
  let timer, seq = 0;
  const validate = async () => {
    const mine = ++seq;
    try {
      await api('POST', '/v1/admin/campaigns:validate', body());
      if (mine === seq) { validation.className = 'ok'; validation.textContent = '✓ valid: the API would accept this campaign'; }
    } catch (err) {
      if (mine === seq) { validation.className = 'error'; validation.textContent = err.message; }
    }
  };
  const changed = () => {
    segBox.hidden = el.audience.value !== 'segment';
    el.emphasis.parentElement.hidden = el.kind.value !== 'template';
    el.state.parentElement.hidden = el.kind.value !== 'subscribe';
    drawPreview();
    clearTimeout(timer);
    timer = setTimeout(validate, 250);
  };

  const form = h('form', { id: 'campaign-form', oninput: changed, onchange: changed, onsubmit: async (e) => {
    e.preventDefault();
    save.disabled = true;
    saveMsg.textContent = '';
    try {
      const b = body();
      let c;
      if (existing) {
        delete b.appId;
        c = await api('PATCH', '/v1/admin/campaigns/' + existing.id, b);
      } else {
        c = await api('POST', '/v1/admin/campaigns', b);
      }
      toast('Saved ' + c.name);
      location.hash = '#/campaign/' + c.id;
    } catch (err) {
      saveMsg.textContent = err.message;
    } finally {
      save.disabled = false;
    }
  } },
  h('div', { class: 'grid' },
    h('div', { class: 'card' },
      h('h2', {}, 'Message'),
      h('div', { class: 'row' }, field('app', 'App', el.app), field('kind', 'Kind', el.kind)),
      field('name', 'Campaign name', el.name),
      field('template', 'Template', el.template), datalist, registryNote,
      h('label', {}, 'Data fields (key, value, colour)'), fieldsBox,
      h('button', { type: 'button', id: 'add-field', onclick: () => { kv(); changed(); } }, '+ field'),
      field('page', 'Page (opened on tap)', el.page),
      field('emphasis', 'Emphasis keyword', el.emphasis),
      field('state', 'Mini-program state', el.state)),
    h('div', {},
      h('div', { class: 'card' }, h('h2', {}, 'Preview'), preview, validation),
      h('div', { class: 'card' }, h('h2', {}, 'Audience'), field('audience', 'Recipients', el.audience), segBox,
        h('p', { class: 'muted' }, 'A list audience is uploaded as CSV on the campaign page once the draft exists.')),
      h('div', { class: 'card' }, h('h2', {}, 'Policy'),
        h('label', {}, el.skip, ' skip users who opted out'), h('label', {}, el.transactional, ' transactional (skips frequency caps and quiet hours)'),
        field('holdout', 'Holdout % (control group, skipped)', el.holdout),
        field('retry', 'Retry budget (transient failures per recipient)', el.retry)))),
  h('p', {}, save, ' ', h('a', { href: existing ? '#/campaign/' + existing.id : '#/campaigns' }, 'Cancel')), saveMsg);

  main.append(h('h1', {}, existing ? 'Edit ' + existing.name : 'New campaign'), form);
  el.app.addEventListener('change', async () => { await loadTemplates(); drawFields(); changed(); });
  el.template.addEventListener('change', () => { drawFields(); changed(); });
  if (existing) {
    el.app.value = existing.appId;
    el.name.value = existing.name;
    el.kind.value = existing.message.kind;
    el.template.value = existing.message.templateId;
    el.page.value = existing.message.page || '';
    el.emphasis.value = existing.message.emphasisKeyword || '';
    el.state.value = existing.message.miniprogramState || '';
    el.audience.value = existing.audience.kind;
    const seg = existing.audience.segment || {};
    for (const k of ['regions', 'industries', 'tags']) el[k].value = (seg[k] || []).join(', ');
    el.skip.checked = existing.policy.skipOptedOut;
    el.transactional.checked = !!existing.policy.transactional;
    el.holdout.value = existing.policy.holdoutPercent || 0;
    el.retry.value = existing.policy.retryBudget;
  }
  await loadTemplates();
  drawFields(existing ? existing.message.data : null);
  changed();
}

// ---- one campaign: audience, schedule, live progress -----------------------------------

async function campaignPage(id) {
  let c = await api('GET', '/v1/admin/campaigns/' + id);
  const head = h('div');
  const sections = h('div');
  main.append(head, sections);
  const act = (what) => async () => {
    try { c = await api('POST', '/v1/admin/campaigns/' + id + '/' + what); toast(what + ': ' + c.status); route(); } catch (err) { toast(err.message); }
  };
  const drawHead = () => head.replaceChildren(h('h1', {}, c.name, ' ', badge(c.status)),
    h('p', { class: 'muted' }, c.id, ' · ', c.appId, ' · ', c.message.kind, ' ', c.message.templateId, ' · audience ', c.audience.kind),
    h('p', {},
      c.status === 'draft' ? h('a', { href: '#/edit/' + id }, h('button', { type: 'button', id: 'edit' }, 'Edit')) : null, ' ',
      ['scheduled', 'planning', 'sending'].includes(c.status) ? h('button', { type: 'button', id: 'pause', onclick: act('pause') }, 'Pause') : null, ' ',
      c.status === 'paused' ? h('button', { type: 'button', id: 'resume', onclick: act('resume') }, 'Resume') : null, ' ',
      !['done', 'cancelled'].includes(c.status) ? h('button', { type: 'button', id: 'cancel', onclick: act('cancel') }, 'Cancel campaign') : null));
  drawHead();
  const upload = c.status === 'draft' && c.audience.kind === 'list' ? uploadSection(id) : null;
  const sched = c.status === 'draft' || (c.status === 'scheduled' && !c.runSeq) ? scheduleSection(c) : null;
  if (upload) sections.append(upload);
  if (sched) sections.append(sched);
  // Once the campaign moves on (planning, sending, done...), audience and schedule can no
  // longer change: their cards go without a reload, as a reload would not draw them.
  const prog = progressSection(c, (status) => {
    if (status === c.status) return;
    c.status = status;
    drawHead();
    if (status !== 'draft' && upload) upload.remove();
    if (!['draft', 'scheduled'].includes(status) && sched) sched.remove();
  });
  sections.append(prog.el);
  stopPage = prog.stop;
}

// uploadSection sends a CSV file in pages of AUDIENCE_PAGE openids through the audience
// route, with a progress bar; a refused page stops the upload and says which.
function uploadSection(id) {
  const file = h('input', { id: 'csv', type: 'file', accept: '.csv,text/csv,text/plain' });
  const bar = h('div');
  const status = h('p', { id: 'upload-status' });
  const button = h('button', { type: 'button', id: 'upload', class: 'primary', onclick: async () => {
    if (!file.files.length) { status.textContent = 'Choose a CSV file with one openid per line.'; return; }
    button.disabled = true;
    try {
      const lines = (await file.files[0].text()).split(/\r?\n/).map((l) => l.split(',')[0].trim()).filter(Boolean);
      if (lines.length && lines[0].toLowerCase() === 'openid') lines.shift();
      let sent = 0, distinct = 0;
      for (let i = 0; i < lines.length; i += AUDIENCE_PAGE) {
        const page = lines.slice(i, i + AUDIENCE_PAGE);
        const a = await api('POST', '/v1/admin/campaigns/' + id + '/audience', page.join('\n') + '\n', 'text/csv');
        sent += page.length;
        distinct += a.distinct;
        bar.style.width = (100 * sent / lines.length).toFixed(1) + '%';
        status.textContent = sent + ' of ' + lines.length + ' openids uploaded';
      }
      status.textContent = 'Uploaded ' + sent + ' openids (' + distinct + ' new).';
      status.className = 'ok';
    } catch (err) {
      status.textContent = 'Upload stopped: ' + err.message;
      status.className = 'error';
    } finally {
      button.disabled = false;
    }
  } }, 'Upload');
  return h('div', { class: 'card', id: 'upload-card' }, h('h2', {}, 'Audience'),
    h('div', { class: 'row' }, h('div', {}, file), h('div', { class: 'narrow' }, button)),
    h('p', {}, h('div', { class: 'bar', id: 'upload-bar' }, bar)), status);
}

function scheduleSection(c) {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const how = h('select', { id: 'schedule-kind' }, h('option', { value: 'now' }, 'now'), h('option', { value: 'at' }, 'once, at'), h('option', { value: 'cron' }, 'repeatedly, on a cron'));
  const at = h('input', { id: 'schedule-at', type: 'datetime-local' });
  const cron = h('input', { id: 'schedule-cron', placeholder: '0 10 * * 1-5', value: '0 10 * * *' });
  const zone = h('input', { id: 'schedule-tz', value: c.schedule.timeZone || tz });
  const next = h('ol', { class: 'next', id: 'next-runs' });
  const msg = h('p', { id: 'schedule-status' });
  const atBox = h('div', {}, h('label', { for: 'schedule-at' }, 'At (your local time)'), at);
  const cronBox = h('div', {}, h('label', { for: 'schedule-cron' }, 'Cron (minute hour day month weekday)'), cron);
  const zoneBox = h('div', {}, h('label', { for: 'schedule-tz' }, 'Time zone'), zone);
  let timer;
  const preview = async () => {
    if (how.value !== 'cron') { next.replaceChildren(); return; }
    try {
      const q = new URLSearchParams({ cron: cron.value, timeZone: zone.value, n: '5' });
      const a = await api('GET', '/v1/admin/schedule/next?' + q);
      next.replaceChildren(...a.next.map((t) => h('li', {}, t.replace('T', ' '))));
      msg.textContent = '';
    } catch (err) {
      next.replaceChildren();
      msg.textContent = err.message;
      msg.className = 'error';
    }
  };
  const changed = () => {
    atBox.hidden = how.value !== 'at';
    cronBox.hidden = zoneBox.hidden = how.value !== 'cron';
    clearTimeout(timer);
    timer = setTimeout(preview, 250);
  };
  const go = h('button', { type: 'button', id: 'schedule', class: 'primary', onclick: async () => {
    const b = how.value === 'now' ? { now: true } : how.value === 'at' ? { at: new Date(at.value).toISOString() } : { cron: cron.value, timeZone: zone.value };
    try {
      await api('POST', '/v1/admin/campaigns/' + c.id + '/schedule', b);
      toast('Scheduled');
      route();
    } catch (err) {
      msg.textContent = err.message;
      msg.className = 'error';
    }
  } }, 'Schedule');
  const el = h('div', { class: 'card', id: 'schedule-card', oninput: changed, onchange: changed }, h('h2', {}, 'Schedule'),
    h('div', { class: 'row' }, h('div', {}, h('label', { for: 'schedule-kind' }, 'Send'), how), atBox, cronBox, zoneBox, h('div', { class: 'narrow' }, go)),
    h('div', { id: 'next-box' }, next), msg);
  changed();
  return el;
}

function progressSection(c, onStatus) {
  const stats = h('div', { class: 'stats', id: 'counters' });
  const bar = h('div');
  const line = h('p', { id: 'progress-line', class: 'muted' });
  const failures = h('tbody');
  const outcome = h('select', { id: 'outcome' }, OUTCOMES.map((o) => h('option', { value: o }, o)));
  const deliveries = h('tbody');
  const more = h('button', { type: 'button', id: 'more' }, 'Next page');
  let run = 0, cursor = '', samples = [], stopped = false, timer;
  const el = h('div', {},
    h('div', { class: 'card', id: 'progress-card' }, h('h2', {}, 'Progress'), stats,
      h('p', {}, h('div', { class: 'bar', id: 'progress-bar' }, bar)), line),
    h('div', { class: 'card' }, h('h2', {}, 'Failures by reason'),
      h('table', { id: 'failures' }, h('thead', {}, h('tr', {}, ['Reason', 'Errcode', 'Count', 'Meaning'].map((x) => h('th', {}, x)))), failures)),
    h('div', { class: 'card' }, h('h2', {}, 'Deliveries'),
      h('div', { class: 'row' }, h('div', {}, h('label', { for: 'outcome' }, 'Outcome'), outcome), h('div', { class: 'narrow' }, more)),
      h('table', { id: 'deliveries' }, h('thead', {}, h('tr', {}, ['Openid', 'State', 'Outcome', 'Reason', 'Errcode', 'Msg id', 'Updated'].map((x) => h('th', {}, x)))), deliveries)));

  const loadDeliveries = async (reset) => {
    if (!run) return;
    if (reset) cursor = '';
    // A page may hold fewer than limit rows and still a cursor (the outcome filter runs
    // after the read): follow it a few times so the first screen is not near-empty.
    let a = { deliveries: [] };
    const rows = [];
    for (let i = 0; i < 10 && rows.length < 50; i++) {
      const q = new URLSearchParams({ outcome: outcome.value, limit: '50' });
      if (cursor) q.set('cursor', cursor);
      a = await api('GET', '/v1/admin/campaigns/' + c.id + '/runs/' + run + '/deliveries?' + q);
      rows.push(...a.deliveries);
      cursor = a.cursor || '';
      if (!cursor) break;
    }
    a.deliveries = rows;
    if (reset) deliveries.replaceChildren();
    deliveries.append(...a.deliveries.map((d) => h('tr', { dataset: { outcome: d.outcome || '', reason: d.reason || '' } }, h('td', {}, d.openId), h('td', {}, d.state), h('td', {}, d.outcome || ''),
      h('td', {}, d.reason || ''), h('td', {}, d.errcode || ''), h('td', {}, d.msgId || ''), h('td', {}, fmtTime(d.updatedAt)))));
    if (!deliveries.children.length) deliveries.append(h('tr', {}, h('td', { colSpan: 7, class: 'muted' }, 'None.')));
    more.disabled = !cursor;
  };
  outcome.addEventListener('change', () => loadDeliveries(true).catch((err) => toast(err.message)));
  more.addEventListener('click', () => loadDeliveries(false).catch((err) => toast(err.message)));

  const poll = async () => {
    const p = await api('GET', '/v1/admin/campaigns/' + c.id + '/progress');
    onStatus(p.status);
    const cur = p.current;
    const k = cur ? cur.counters : { planned: 0, sent: 0, noGrant: 0, skipped: 0, unknown: 0 };
    const failed = Object.values(k.failed || {}).reduce((a, b) => a + b, 0);
    const final = k.sent + failed + k.noGrant + k.skipped + k.unknown;
    const stat = (name, label, n) => h('div', { class: 'stat', id: 'count-' + name }, h('b', {}, n), label);
    stats.replaceChildren(stat('planned', 'planned', k.planned), stat('sent', 'sent', k.sent), stat('failed', 'failed', failed),
      stat('no_grant', 'no grant', k.noGrant), stat('skipped', 'skipped', k.skipped), stat('unknown', 'unknown', k.unknown));
    const pct = k.planned ? Math.min(100, 100 * final / k.planned) : (p.status === 'done' ? 100 : 0);
    bar.style.width = pct.toFixed(1) + '%';
    const now = Date.now();
    samples.push({ t: now, final });
    samples = samples.filter((s) => now - s.t <= 10000);
    const rate = samples.length > 1 ? (final - samples[0].final) / ((now - samples[0].t) / 1000) : 0;
    const left = Math.max(0, k.planned - final);
    line.textContent = [cur ? 'run ' + cur.run + ' (' + cur.status + ')' : 'no run yet' + (p.nextRunAt ? '; next at ' + fmtTime(p.nextRunAt) : ''),
      final + ' of ' + k.planned + ' final (' + pct.toFixed(0) + '%)',
      rate.toFixed(1) + ' messages/s',
      left === 0 ? 'nothing left' : rate > 0 ? 'about ' + Math.ceil(left / rate) + ' s to finish' : 'time to finish unknown'].join(' · ');
    const m = await meanings();
    const rows = Object.entries(k.failed || {}).sort((a, b) => b[1] - a[1]);
    failures.replaceChildren(...rows.map(([reason, n]) => {
      const e = m[reason] || (reason.startsWith('errcode_') ? { errcode: reason.slice(8), meaning: 'an errcode not in the table: the campaign pauses' } : {});
      return h('tr', { dataset: { reason } }, h('td', {}, reason), h('td', {}, e.errcode === undefined ? '' : e.errcode), h('td', {}, n), h('td', {}, e.meaning || ''));
    }));
    if (!rows.length) failures.append(h('tr', {}, h('td', { colSpan: 4, class: 'muted' }, 'No failures.')));
    // The first page follows the run while it moves, and a few polls past its end: a
    // delivery's outcome can reach the listing a moment after the counters.
    if (cur && cur.run !== run) { run = cur.run; await loadDeliveries(true); } else if (firstPage && tail > 0) await loadDeliveries(true);
    return p.status;
  };
  let firstPage = true, tail = 5;
  more.addEventListener('click', () => { firstPage = false; });
  outcome.addEventListener('change', () => { firstPage = true; tail = 5; });
  const loop = async () => {
    if (stopped) return;
    let status;
    try { status = await poll(); } catch (err) { line.textContent = err.message; }
    el.dataset.status = status || '';
    if (['done', 'cancelled', 'draft'].includes(status)) tail--;
    if (!stopped && tail > 0) timer = setTimeout(loop, 1000);
  };
  loop();
  return { el, stop: () => { stopped = true; clearTimeout(timer); } };
}

// ---- grants inventory ------------------------------------------------------------------

async function grantsPage() {
  const appList = await apps();
  const app = h('select', { id: 'inventory-app' }, appList.map((a) => h('option', { value: a }, a)));
  const box = h('div', { id: 'inventory' });
  main.append(h('h1', {}, 'Grants'), h('div', { class: 'card row' }, h('div', {}, h('label', { for: 'inventory-app' }, 'App'), app)), box);
  const load = async () => {
    box.replaceChildren(h('p', { class: 'muted' }, 'Counting…'));
    const inv = await api('GET', '/v1/admin/inventory?appId=' + encodeURIComponent(app.value));
    const stat = (id, label, n) => h('div', { class: 'stat', id }, h('b', {}, n), label);
    box.replaceChildren(
      h('div', { class: 'stats' }, stat('inv-live', 'live grants', inv.live),
        Object.entries(inv.liveByKind || {}).map(([k, n]) => stat('inv-' + k, k, n)),
        stat('inv-24h', 'expiring in 24 h', inv.expiring24h), stat('inv-7d', 'expiring in 7 days', inv.expiring7d)),
      inv.truncated ? h('p', { class: 'error' }, 'Counts are partial: the scan stopped at its bound.') : null,
      h('div', { class: 'card' }, h('h2', {}, 'Expiring per day, next 7 days'), chart('chart-expiring', inv.expiringPerDay || [], '#d4a72c')),
      h('div', { class: 'card' }, h('h2', {}, 'Expired unspent per day, last 30 days'), chart('chart-expired', inv.expiredPerDay || [], '#cf222e')),
      h('p', { class: 'muted' }, 'Counted at ' + fmtTime(inv.at) + ' (days are UTC).'));
  };
  app.addEventListener('change', () => load().catch((err) => box.replaceChildren(errorBox(err))));
  await load();
}

// chart draws days [{day, total}] as an inline SVG bar chart (no library: a few rects).
function chart(id, days, color) {
  const NS = 'http://www.w3.org/2000/svg';
  const s = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const W = 1000, H = 180, pad = 24, top = 14;
  const max = Math.max(1, ...days.map((d) => d.total));
  const bw = (W - 2 * pad) / Math.max(1, days.length);
  const svg = s('svg', { id, viewBox: `0 0 ${W} ${H + 30}`, width: '100%', role: 'img', 'aria-label': days.map((d) => d.day + ': ' + d.total).join(', ') });
  svg.append(s('line', { x1: pad, x2: W - pad, y1: H, y2: H, stroke: '#d0d7de' }));
  days.forEach((d, i) => {
    const hgt = (H - top) * d.total / max;
    const x = pad + i * bw;
    const r = s('rect', { x: x + 2, y: H - hgt, width: Math.max(1, bw - 4), height: hgt, fill: color, 'data-day': d.day, 'data-total': d.total });
    r.append(s('title', {}, d.day + ': ' + d.total));
    svg.append(r);
    if (d.total) svg.append(s('text', { x: x + bw / 2, y: H - hgt - 3, 'text-anchor': 'middle' }, d.total));
    if (days.length <= 10 || i % 5 === 0 || i === days.length - 1) svg.append(s('text', { x: x + bw / 2, y: H + 16, 'text-anchor': 'middle' }, d.day.slice(5)));
  });
  return svg;
}
