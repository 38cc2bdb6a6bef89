// The tickets console: a client of the HTTP API, nothing more.
//
// Screens (hash routes): #/queue, #/ticket/<id>, #/ops, and the sign-in
// form when the server asks for a token. The page is built with DOM calls
// only (no HTML strings, nothing inline: the Content-Security-Policy forbids it).
// The bearer token lives in this tab's sessionStorage. Live updates come
// from GET /tickets/stream read with fetch() (an EventSource cannot send the
// Authorization header), resumed with Last-Event-ID after a drop.
'use strict';

(() => {
  const TOKEN_KEY = 'tickets.console.token';
  const PAGE_SIZE = 20;
  const OPS_EVERY_MS = 2000;
  const OPS_WINDOW_MS = 5 * 60 * 1000;

  const app = {
    token: sessionStorage.getItem(TOKEN_KEY),
    // What this caller may do, probed at sign-in (see probe()).
    caps: null,
    screen: null,
    queue: {
      filters: { status: '', agent: '', customer: '', sort: 'created_at', order: 'desc' },
      cursors: [null], // the cursor of each page seen; the last is the current page
      loading: false,
      again: false,
    },
    ticket: null, // { detail, events, newerVersion }
    // letters: the last GET /projections/dead-letters (admins); confirm: the
    // dead letter whose skip waits for a yes; busy: a retry or skip in flight.
    ops: { samples: {}, last: null, timer: null, letters: null, lettersKey: '', error: '', done: '', confirm: null, busy: false, opened: {} },
    stream: { controller: null, lastId: null },
  };

  // ---- DOM helpers -------------------------------------------------------

  function h(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function svg(tag, attrs, ...children) {
    return build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
  }

  function build(el, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') el.setAttribute('class', value);
      else if (key === 'text') el.textContent = value;
      else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (key === 'value') el.value = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const $ = (selector) => document.querySelector(selector);

  function announce(text) {
    const region = $('#announce');
    region.textContent = '';
    // A fresh node, so screen readers read the same message twice in a row.
    window.setTimeout(() => { region.textContent = text; }, 50);
  }

  function when(iso) {
    if (!iso) return '—';
    const date = new Date(iso);
    return h('time', { datetime: iso, title: iso }, date.toLocaleString(undefined, {
      dateStyle: 'medium', timeStyle: 'medium',
    }));
  }

  function badge(status) {
    return h('span', { class: `badge ${status}` }, status);
  }

  // ---- The API -----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  function authHeaders() {
    return app.token ? { authorization: `Bearer ${app.token}` } : {};
  }

  // One call; a problem+json answer becomes an ApiError. `allow` lists
  // statuses that are answers, not errors (/readyz is 503 when not ready).
  async function api(method, path, { body, headers, allow } = {}) {
    const init = { method, headers: { accept: 'application/json', ...authHeaders(), ...(headers || {}) } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, { title: 'Network error', detail: `The server could not be reached (${error.message}).` });
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
    if (!response.ok && !(allow || []).includes(response.status)) {
      const error = new ApiError(response.status, data);
      if (response.status === 401 && app.caps) signedOut(`The server refused the token: ${error.message}`);
      throw error;
    }
    return { status: response.status, data, headers: response.headers };
  }

  // ---- Who is asking -----------------------------------------------------

  // The API has no "who am I": the console asks what it may read. Customers
  // read tickets; agents the dashboard too; admins /readyz and the dead
  // letters as well; the metrics role /readyz only. Changing status or agent
  // goes with the dashboard (agents and admins).
  async function probe() {
    const may = async (path, allow) => {
      try {
        await api('GET', path, { allow });
        return true;
      } catch (error) {
        if (error.status === 403) return false;
        throw error;
      }
    };
    const tickets = await may('/tickets?limit=1');
    const dashboard = await may('/dashboard');
    const ops = await may('/readyz', [503]);
    const deadLetters = ops && await may('/projections/dead-letters');
    const role = !app.token ? 'auth off'
      : ops && tickets ? 'admin'
        : ops ? 'metrics'
          : dashboard ? 'agent' : 'customer';
    return { tickets, dashboard, ops, deadLetters, work: dashboard, role };
  }

  async function start() {
    try {
      app.caps = await probe();
    } catch (error) {
      app.caps = null;
      if (error.status === 401) {
        renderSignIn(app.token ? `The server refused the saved token: ${error.message}` : null);
      } else {
        renderFailure(error);
      }
      return;
    }
    $('#who').textContent = app.caps.role === 'auth off' ? 'auth off' : `signed in: ${app.caps.role}`;
    $('#sign-out').hidden = !app.token;
    $('#nav-queue').hidden = !app.caps.tickets;
    $('#nav-ops').hidden = !app.caps.ops;
    if (app.caps.tickets) startStream();
    if (app.caps.ops) startOpsSampling();
    route();
  }

  function signedOut(message) {
    stopStream();
    stopOpsSampling();
    app.caps = null;
    app.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('#who').textContent = '';
    $('#sign-out').hidden = true;
    renderSignIn(message);
  }

  // ---- Routing -----------------------------------------------------------

  function route() {
    if (!app.caps) return;
    const hash = location.hash || '#/';
    if (!hash.startsWith('#/')) return; // the skip link
    const [, screen, id] = hash.split('/');
    const fallback = app.caps.tickets ? 'queue' : 'ops';
    if (screen === 'ticket' && id && app.caps.tickets) return renderTicket(decodeURIComponent(id));
    if (screen === 'ops' && app.caps.ops) return renderOps();
    if (screen === 'queue' && app.caps.tickets) return renderQueue();
    location.replace(`#/${fallback}`);
  }

  function show(screen, title, ...content) {
    app.screen = screen;
    for (const link of document.querySelectorAll('#nav a')) {
      if (link.id === `nav-${screen}`) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.title = `${title} · Tickets console`;
    const main = $('#main');
    const heading = h('h1', { tabindex: '-1', id: 'screen-title' }, title);
    main.replaceChildren(heading, ...content);
    heading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }

  function renderFailure(error) {
    app.screen = 'failure';
    $('#main').replaceChildren(
      h('h1', {}, 'The API did not answer'),
      h('p', { class: 'alert error', role: 'alert' }, error.message),
      h('button', { type: 'button', onclick: () => start() }, 'Try again'),
    );
  }

  // ---- Sign-in -----------------------------------------------------------

  function renderSignIn(message) {
    app.screen = 'sign-in';
    document.title = 'Sign in · Tickets console';
    $('#nav-queue').hidden = true;
    $('#nav-ops').hidden = true;
    const input = h('input', {
      id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': 'token-help token-error',
    });
    const error = h('p', { id: 'token-error', class: 'error', role: 'alert' }, message || '');
    if (message) input.setAttribute('aria-invalid', 'true');
    const form = h('form', { class: 'card', id: 'sign-in', novalidate: true },
      h('div', { class: 'field' },
        h('label', { for: 'token' }, 'API token'),
        input,
        h('p', { id: 'token-help', class: 'muted' },
          'An API token (from “ticketd token create”). It is kept in this tab only, and sent as “Authorization: Bearer”.'),
        error),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'sign-in-submit' }, 'Sign in')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const secret = input.value.trim();
      if (!secret) {
        error.textContent = 'Enter a token.';
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      app.token = secret;
      try {
        await api('GET', '/tickets?limit=1', { allow: [403] });
      } catch (failure) {
        app.token = null;
        error.textContent = failure.status === 401 ? `Refused: ${failure.message}` : failure.message;
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, secret);
      announce('Signed in');
      start();
    });
    $('#main').replaceChildren(h('h1', { tabindex: '-1' }, 'Sign in'), form);
    input.focus();
  }

  // ---- Form errors next to their fields -----------------------------------

  // Each form field is `prefix-name` with its error in `prefix-name-error`;
  // a problem naming a field lands there, anything else in the form's alert.
  function field(prefix, name, label, control, help) {
    const id = `${prefix}-${name}`;
    control.id = id;
    control.name = name;
    control.setAttribute('aria-describedby', `${id}-error${help ? ` ${id}-help` : ''}`);
    return h('div', { class: 'field' },
      h('label', { for: id }, label),
      control,
      help ? h('p', { id: `${id}-help`, class: 'muted' }, help) : null,
      h('p', { id: `${id}-error`, class: 'error' }));
  }

  function clearErrors(form) {
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    for (const el of form.querySelectorAll('.error')) el.textContent = '';
  }

  // Shows `error` next to the field it names; true when one did.
  function showFieldError(form, prefix, error) {
    const name = error.problem && error.problem.field;
    const control = name && form.querySelector(`#${CSS.escape(`${prefix}-${name}`)}`);
    if (!control) return false;
    control.setAttribute('aria-invalid', 'true');
    $(`#${CSS.escape(`${prefix}-${name}`)}-error`).textContent = error.message;
    control.focus();
    return true;
  }

  function problemText(error) {
    const status = error.status ? `${error.status} ${error.problem.title || ''}`.trim() : error.problem.title;
    return `${status}: ${error.message}`;
  }

  // ---- Queue -------------------------------------------------------------

  function renderQueue() {
    const q = app.queue;
    const content = [];

    const main = h('div', {});
    const side = h('div', {});
    content.push(h('div', { class: 'grid' }, main, side));

    // Filters and sorts: those of GET /tickets.
    const filters = h('form', { id: 'filters', class: 'filters', novalidate: true, 'aria-label': 'Filter and sort' },
      field('filter', 'status', 'Status', h('select', {},
        ['', 'open', 'triaged', 'closed'].map((s) => h('option', { value: s }, s || 'any')))),
      field('filter', 'agent', 'Agent', h('input', { type: 'text', autocomplete: 'off' })),
      field('filter', 'customer', 'Customer', h('input', { type: 'text', autocomplete: 'off' })),
      field('filter', 'sort', 'Sort by', h('select', {},
        h('option', { value: 'created_at' }, 'created'), h('option', { value: 'updated_at' }, 'updated'))),
      field('filter', 'order', 'Order', h('select', {},
        h('option', { value: 'desc' }, 'newest first'), h('option', { value: 'asc' }, 'oldest first'))),
      h('div', { class: 'actions' },
        h('button', { type: 'submit' }, 'Apply'),
        h('button', { type: 'button', class: 'secondary', onclick: resetFilters }, 'Reset')));
    for (const [name, value] of Object.entries(q.filters)) filters.elements[name].value = value;
    filters.addEventListener('submit', (event) => {
      event.preventDefault();
      for (const name of Object.keys(q.filters)) q.filters[name] = filters.elements[name].value.trim();
      q.cursors = [null];
      loadQueue({ announceIt: true });
    });
    for (const name of ['status', 'sort', 'order']) {
      filters.elements[name].addEventListener('change', () => filters.requestSubmit());
    }

    main.append(h('section', { class: 'card', 'aria-labelledby': 'tickets-title' },
      h('h2', { id: 'tickets-title' }, 'Tickets'),
      filters,
      h('p', { id: 'filters-alert', class: 'alert error', role: 'alert' }),
      h('table', { class: 'queue-table', id: 'queue' },
        h('caption', { class: 'visually-hidden' }, 'Tickets, updated live'),
        h('thead', {}, h('tr', {},
          ['Subject', 'Customer', 'Status', 'Agent', 'Updated', 'Latest'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', { id: 'queue-body' })),
      h('p', { id: 'queue-empty', class: 'muted', hidden: true }, 'No tickets match.'),
      h('nav', { class: 'pager', 'aria-label': 'Pages' },
        h('span', { id: 'page-label', class: 'muted' }),
        h('button', { type: 'button', class: 'secondary', id: 'page-first', onclick: () => page(0) }, 'First page'),
        h('button', { type: 'button', class: 'secondary', id: 'page-prev', onclick: () => page(-1) }, 'Previous'),
        h('button', { type: 'button', class: 'secondary', id: 'page-next', onclick: () => page(1) }, 'Next'))));

    if (app.caps.dashboard) {
      side.append(h('section', { class: 'card', 'aria-labelledby': 'counts-title' },
        h('h2', { id: 'counts-title' }, 'Counts'),
        h('ul', { class: 'counts', id: 'counts' },
          ['open', 'triaged', 'closed'].map((s) => h('li', {},
            h('span', {}, s),
            h('span', { class: 'track', 'aria-hidden': 'true' }, h('span', { class: `fill ${s}`, id: `bar-${s}` })),
            h('span', { class: 'n', id: `count-${s}` }, '–')))),
        h('p', { class: 'total' }, 'Total: ', h('span', { id: 'count-total' }, '–'))));
    }
    side.append(newTicketForm());

    show('queue', 'Queue', ...content);
    loadQueue({});
  }

  function resetFilters() {
    app.queue.filters = { status: '', agent: '', customer: '', sort: 'created_at', order: 'desc' };
    app.queue.cursors = [null];
    renderQueue();
  }

  function page(direction) {
    const q = app.queue;
    if (direction === 0) q.cursors = [null];
    else if (direction < 0 && q.cursors.length > 1) q.cursors.pop();
    else if (direction > 0 && q.next) q.cursors.push(q.next);
    loadQueue({ announceIt: true });
  }

  function queuePath() {
    const q = app.queue;
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(q.filters)) if (value) params.set(name, value);
    params.set('limit', String(PAGE_SIZE));
    const cursor = q.cursors[q.cursors.length - 1];
    if (cursor) params.set('cursor', cursor);
    return `/tickets?${params}`;
  }

  // Loads the current page and the counts; a call made while one runs
  // makes it run once more afterwards (so bursts of changes coalesce).
  async function loadQueue({ announceIt, flash }) {
    const q = app.queue;
    if (flash) (q.flash || (q.flash = new Set())).add(flash);
    if (q.loading) { q.again = true; return; }
    q.loading = true;
    try {
      do {
        q.again = false;
        await loadQueueOnce(announceIt);
      } while (q.again && app.screen === 'queue');
    } finally {
      q.loading = false;
    }
  }

  async function loadQueueOnce(announceIt) {
    const q = app.queue;
    const form = $('#filters');
    const alert = $('#filters-alert');
    const [list, counts] = await Promise.allSettled([
      api('GET', queuePath()),
      app.caps.dashboard ? api('GET', '/dashboard') : Promise.resolve(null),
    ]);
    if (app.screen !== 'queue') return;
    if (counts.status === 'fulfilled' && counts.value) showCounts(counts.value.data);
    clearErrors(form);
    alert.textContent = '';
    if (list.status === 'rejected') {
      if (!showFieldError(form, 'filter', list.reason)) alert.textContent = problemText(list.reason);
      return;
    }
    const { items, next_cursor: next } = list.value.data;
    q.next = next;
    const flash = q.flash || new Set();
    q.flash = null;
    $('#queue-body').replaceChildren(...items.map((row) => {
      const tr = h('tr', { 'data-id': row.id, 'data-status': row.status, class: flash.has(row.id) ? 'flash' : null },
        h('td', { 'data-label': 'Subject' }, h('a', { href: `#/ticket/${row.id}` }, row.subject)),
        h('td', { 'data-label': 'Customer' }, row.customer),
        h('td', { 'data-label': 'Status' }, badge(row.status)),
        h('td', { 'data-label': 'Agent' }, row.agent || '—'),
        h('td', { 'data-label': 'Updated' }, when(row.updated_at)),
        h('td', { 'data-label': 'Latest', class: 'preview' }, row.last_note_preview || row.preview));
      return tr;
    }));
    $('#queue-empty').hidden = items.length > 0;
    const number = q.cursors.length;
    $('#page-label').textContent = `Page ${number}`;
    $('#page-first').disabled = number === 1;
    $('#page-prev').disabled = number === 1;
    $('#page-next').disabled = !next;
    if (announceIt) announce(`${items.length} tickets on page ${number}`);
  }

  function showCounts(counts) {
    const biggest = Math.max(1, counts.open, counts.triaged, counts.closed);
    for (const status of ['open', 'triaged', 'closed']) {
      const n = $(`#count-${status}`);
      if (!n) return;
      n.textContent = String(counts[status]);
      $(`#bar-${status}`).style.width = `${(100 * counts[status]) / biggest}%`;
    }
    $('#count-total').textContent = String(counts.total);
  }

  function newTicketForm() {
    const form = h('form', { class: 'card', id: 'new-ticket', novalidate: true, 'aria-labelledby': 'new-title' },
      h('h2', { id: 'new-title' }, 'New ticket'),
      field('new', 'customer', 'Customer', h('input', { type: 'text', autocomplete: 'organization' })),
      field('new', 'subject', 'Subject', h('input', { type: 'text', autocomplete: 'off' })),
      field('new', 'message', 'Message', h('textarea', { rows: '4' })),
      h('p', { id: 'new-alert', class: 'alert error', role: 'alert' }),
      h('p', { id: 'new-done', class: 'alert ok', role: 'status' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'new-submit' }, 'Open ticket')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearErrors(form);
      $('#new-alert').textContent = '';
      $('#new-done').textContent = '';
      const body = {
        customer: form.elements.customer.value,
        subject: form.elements.subject.value,
        message: form.elements.message.value,
      };
      const button = $('#new-submit');
      button.disabled = true;
      try {
        const { data } = await api('POST', '/tickets', { body });
        form.elements.subject.value = '';
        form.elements.message.value = '';
        $('#new-done').replaceChildren('Opened: ', h('a', { href: `#/ticket/${data.id}`, id: 'new-link' }, data.subject));
        announce(`Ticket opened: ${data.subject}`);
      } catch (error) {
        if (!showFieldError(form, 'new', error)) $('#new-alert').textContent = problemText(error);
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  // ---- Ticket ------------------------------------------------------------

  async function renderTicket(id) {
    show('ticket', 'Ticket', h('p', { class: 'muted' }, 'Loading…'));
    try {
      const [detail, events] = await Promise.all([
        api('GET', `/tickets/${encodeURIComponent(id)}`),
        api('GET', `/tickets/${encodeURIComponent(id)}/events`),
      ]);
      app.ticket = { detail: detail.data, events: events.data.events, newerVersion: null };
    } catch (error) {
      if (app.screen !== 'ticket') return;
      show('ticket', 'Ticket', h('p', { class: 'alert error', role: 'alert' },
        error.status === 404 ? 'No such ticket (or not one this token may see).' : problemText(error)),
      h('p', {}, h('a', { href: '#/queue' }, 'Back to the queue')));
      return;
    }
    if (app.screen !== 'ticket') return;
    drawTicket(true);
  }

  // Draws app.ticket; `fresh` moves the focus to the heading (navigation).
  function drawTicket(fresh, keep) {
    const { detail: t, events } = app.ticket;
    const work = app.caps.work;
    const status = h('form', { id: 'status-form', novalidate: true, 'aria-labelledby': 'status-legend' },
      h('fieldset', {},
        h('legend', { id: 'status-legend' }, 'Status'),
        h('div', { class: 'actions' },
          h('button', { type: 'button', id: 'triage-button', disabled: t.status !== 'open', onclick: () => change({ status: 'triaged' }, 'Triaged') }, 'Triage'),
          h('button', { type: 'button', id: 'reopen-button', class: 'secondary', disabled: t.status !== 'triaged', onclick: () => change({ status: 'open' }, 'Reopened') }, 'Reopen'),
          h('button', { type: 'button', id: 'close-button', disabled: t.status === 'closed', onclick: () => change({ status: 'closed' }, 'Closed') }, 'Close')),
        h('input', { type: 'hidden', id: 'change-status' }),
        h('p', { id: 'change-status-error', class: 'error' }),
        t.status === 'closed' ? h('p', { class: 'muted' }, 'A closed ticket keeps its status; notes and agents can still change.') : null));
    const agentInput = h('input', { type: 'text', autocomplete: 'off', value: keep ? keep.agent : (t.agent || '') });
    const assign = h('form', { id: 'assign-form', novalidate: true },
      field('change', 'agent', 'Agent', agentInput),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', id: 'assign-button' }, 'Assign'),
        h('button', { type: 'button', class: 'secondary', id: 'unassign-button', disabled: !t.agent, onclick: () => change({ agent: null }, 'Unassigned') }, 'Unassign')));
    assign.addEventListener('submit', (event) => {
      event.preventDefault();
      change({ agent: agentInput.value }, 'Assigned');
    });
    const noteInput = h('textarea', { rows: '3' });
    noteInput.value = keep ? keep.note : '';
    const note = h('form', { id: 'note-form', novalidate: true },
      field('change', 'note', 'Note', noteInput),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'note-button' }, 'Add note')));
    note.addEventListener('submit', (event) => {
      event.preventDefault();
      change({ note: noteInput.value }, 'Note added');
    });

    const banner = h('div', { id: 'ticket-banner', class: 'alert warn', role: 'status' });
    const actions = h('section', { class: 'card', id: 'actions', 'aria-labelledby': 'actions-title' },
      h('h2', { id: 'actions-title' }, 'Work on it'),
      h('div', { id: 'ticket-alert', class: 'alert error', role: 'alert' }),
      work ? status : null,
      work ? assign : null,
      note,
      h('p', { class: 'muted' }, `Changes are sent with If-Match: "${t.version}" (the version shown): if the ticket moved on meanwhile, nothing is written and you are told.`));

    const facts = h('dl', { class: 'facts', id: 'facts' },
      h('dt', {}, 'Status'), h('dd', { id: 'ticket-status' }, badge(t.status)),
      h('dt', {}, 'Customer'), h('dd', { id: 'ticket-customer' }, t.customer),
      h('dt', {}, 'Agent'), h('dd', { id: 'ticket-agent' }, t.agent || '—'),
      h('dt', {}, 'Version'), h('dd', { id: 'ticket-version' }, String(t.version)),
      h('dt', {}, 'Opened'), h('dd', {}, when(t.created_at)),
      h('dt', {}, 'Updated'), h('dd', {}, when(t.updated_at)),
      h('dt', {}, 'Id'), h('dd', { class: 'mono' }, t.id));

    const notes = t.notes.length
      ? h('ol', { class: 'notes', id: 'notes' }, t.notes.map((n) => h('li', {}, n.text, ' ', when(n.added_at))))
      : h('p', { class: 'muted', id: 'notes' }, 'No notes yet.');

    const history = h('table', { class: 'history' },
      h('caption', {}, 'Every event, oldest first'),
      h('thead', {}, h('tr', {}, ['#', 'When', 'Who', 'What'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', { id: 'history-body' }, events.map((e) => h('tr', { 'data-type': e.type },
        h('td', {}, String(e.version)),
        h('td', {}, when(e.occurred_at)),
        h('td', {}, (e.metadata && e.metadata.actor) || '—'),
        h('td', {}, describe(e))))));

    const content = [
      h('p', {}, h('a', { href: '#/queue' }, '← Queue')),
      banner,
      h('div', { class: 'grid' },
        h('div', {},
          h('section', { class: 'card', 'aria-labelledby': 'about-title' },
            h('h2', { id: 'about-title' }, 'Ticket'), facts,
            h('p', { class: 'message', id: 'ticket-message' }, t.message)),
          h('section', { class: 'card', 'aria-labelledby': 'notes-title' }, h('h2', { id: 'notes-title' }, 'Notes'), notes),
          h('section', { class: 'card', 'aria-labelledby': 'history-title' }, h('h2', { id: 'history-title' }, 'History'), history)),
        actions),
    ];
    if (fresh) {
      show('ticket', t.subject, ...content);
    } else {
      $('#screen-title').textContent = t.subject;
      $('#main').replaceChildren($('#screen-title'), ...content);
    }
  }

  function describe(event) {
    const d = event.data || {};
    switch (event.type) {
      case 'TicketOpened': return `opened for ${d.customer}: “${d.subject}”`;
      case 'TicketTriaged': return 'triaged';
      case 'TicketReopened': return 'reopened';
      case 'TicketClosed': return 'closed';
      case 'AgentAssigned': return `assigned to ${d.agent}`;
      case 'AgentUnassigned': return 'unassigned';
      case 'NoteAdded': return `note: “${d.text}”`;
      default: return `${event.type} ${JSON.stringify(d)}`;
    }
  }

  // A PATCH with If-Match: the version on screen, or `*` when the user chose
  // to apply the change to whatever the ticket is now (after a 412). 412 and
  // 409 are explained, never swallowed.
  async function change(body, done, { anyVersion } = {}) {
    const t = app.ticket.detail;
    const form = $('#actions');
    clearErrors(form);
    const alert = $('#ticket-alert');
    alert.replaceChildren();
    for (const button of form.querySelectorAll('button')) button.disabled = true;
    try {
      const ifMatch = anyVersion ? '*' : `"${t.version}"`;
      const { data } = await api('PATCH', `/tickets/${t.id}`, { body, headers: { 'if-match': ifMatch } });
      const events = await api('GET', `/tickets/${t.id}/events`);
      app.ticket = { detail: data, events: events.data.events, newerVersion: null };
      drawTicket(false);
      announce(`${done}. Version ${data.version}.`);
    } catch (error) {
      const keep = { agent: $('#change-agent') ? $('#change-agent').value : '', note: $('#change-note').value };
      if (app.screen !== 'ticket') return;
      drawTicket(false, keep);
      const alertNow = $('#ticket-alert');
      if (error.status === 412) {
        alertNow.replaceChildren(
          h('p', {}, h('strong', {}, 'Not applied: this ticket changed after you loaded it.')),
          h('p', {}, `You were looking at version ${t.version}; someone else (or another tab) changed it since. `
            + 'Nothing was written, so no change of theirs is overwritten. Your input is kept: reload to see the ticket as it is now, then decide again.'),
          h('p', { class: 'muted' }, problemText(error)),
          h('div', { class: 'actions' },
            h('button', { type: 'button', id: 'reload-button', onclick: () => reloadTicket(keep) }, 'Reload the ticket'),
            h('button', { type: 'button', id: 'apply-anyway-button', class: 'secondary', onclick: () => change(body, done, { anyVersion: true }) },
              'Apply my change anyway')));
      } else if (error.status === 409) {
        // The rule a 409 names: `status` is "a closed ticket keeps its
        // status"; none is a lost race (or another rule: its detail says).
        const field = error.problem.field;
        const lostRace = !field && /race|kept changing/i.test(error.message);
        alertNow.replaceChildren(
          h('p', {}, h('strong', {}, 'Not applied: conflict.')),
          h('p', {}, field === 'status'
            ? 'The ticket is closed (perhaps just now, elsewhere), and a closed ticket cannot change status. Nothing was written. Notes and agents are still allowed.'
            : lostRace
              ? 'Another change to this ticket kept winning the race, even after retries. Nothing was written; try again.'
              : 'The server refused this change to the ticket as it is now. Nothing was written.'),
          h('p', { class: 'muted' }, problemText(error)),
          h('button', { type: 'button', id: 'reload-button', onclick: () => reloadTicket(keep) }, 'Reload the ticket'));
      } else if (!showFieldError($('#actions'), 'change', error)) {
        alertNow.textContent = problemText(error);
      }
      if (!alertNow.textContent) return;
      alertNow.setAttribute('tabindex', '-1');
      alertNow.focus();
    }
  }

  async function reloadTicket(keep) {
    const id = app.ticket.detail.id;
    const [detail, events] = await Promise.all([
      api('GET', `/tickets/${id}`),
      api('GET', `/tickets/${id}/events`),
    ]);
    app.ticket = { detail: detail.data, events: events.data.events, newerVersion: null };
    drawTicket(false, keep);
    announce(`Reloaded: version ${detail.data.version}`);
    $('#screen-title').focus();
  }

  // ---- Live: the change stream ---------------------------------------------

  function setLive(on, text) {
    const live = $('#live');
    live.classList.toggle('on', on);
    live.textContent = text || (on ? 'live' : 'reconnecting');
  }

  function startStream() {
    if (app.stream.controller) return;
    const controller = new AbortController();
    app.stream.controller = controller;
    followStream(controller);
  }

  function stopStream() {
    if (app.stream.controller) app.stream.controller.abort();
    app.stream.controller = null;
    setLive(false, 'offline');
  }

  async function followStream(controller) {
    while (!controller.signal.aborted) {
      try {
        const headers = { accept: 'text/event-stream', ...authHeaders() };
        if (app.stream.lastId !== null) headers['last-event-id'] = app.stream.lastId;
        const response = await fetch('/tickets/stream', { headers, signal: controller.signal, cache: 'no-store' });
        if (response.status === 401) {
          signedOut('The server refused the token.');
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        setLive(true);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch {
        if (controller.signal.aborted) return;
      }
      setLive(false);
      await new Promise((resolve) => { window.setTimeout(resolve, 1000); });
    }
  }

  function dispatch(block) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (name === 'id') app.stream.lastId = value;
      else if (name === 'event') type = value;
      else if (name === 'data') data.push(value);
    }
    if (type !== 'ticket' || data.length === 0) return;
    let change;
    try { change = JSON.parse(data.join('\n')); } catch { return; }
    if (app.screen === 'queue') loadQueue({ flash: change.id });
    if (app.screen === 'ticket' && app.ticket && app.ticket.detail.id === change.id
        && change.version > app.ticket.detail.version) {
      app.ticket.newerVersion = Math.max(app.ticket.newerVersion || 0, change.version);
      const banner = $('#ticket-banner');
      banner.replaceChildren(
        `Changed elsewhere: the ticket is now at version ${app.ticket.newerVersion}, you are looking at version ${app.ticket.detail.version}. `,
        h('button', { type: 'button', class: 'link', id: 'banner-reload', onclick: () => reloadTicket(null) }, 'Show the current ticket'));
    }
  }

  // ---- Ops ---------------------------------------------------------------

  function startOpsSampling() {
    if (app.ops.timer) return;
    sampleOps();
    app.ops.timer = window.setInterval(sampleOps, OPS_EVERY_MS);
  }

  function stopOpsSampling() {
    window.clearInterval(app.ops.timer);
    app.ops.timer = null;
  }

  async function sampleOps() {
    if (app.caps && app.caps.deadLetters && app.screen === 'ops') loadDeadLetters();
    let report;
    try {
      report = (await api('GET', '/readyz', { allow: [503] })).data;
    } catch (error) {
      report = { ready: false, error: problemText(error) };
    }
    const now = Date.now();
    app.ops.last = report;
    for (const p of report.projections || []) {
      const series = app.ops.samples[p.projection] || (app.ops.samples[p.projection] = []);
      series.push({ at: now, events: p.lag_events, seconds: p.lag_seconds });
      while (series.length && series[0].at < now - OPS_WINDOW_MS) series.shift();
    }
    if (app.screen === 'ops') drawOps(false);
  }

  function renderOps() {
    app.ops.confirm = null;
    app.ops.error = '';
    app.ops.done = '';
    show('ops', 'Ops',
      h('div', { id: 'ops' }, h('p', { class: 'muted' }, 'Asking /readyz…')),
      app.caps.deadLetters ? h('section', { class: 'card', id: 'dead-letters', 'aria-labelledby': 'dead-title' }) : null);
    if (app.ops.last) drawOps(true);
    if (app.caps.deadLetters) {
      drawDeadLetters();
      loadDeadLetters();
    }
  }

  function drawOps() {
    const report = app.ops.last;
    const body = [];
    body.push(h('p', { id: 'readiness', class: report.ready ? 'alert ok' : 'alert warn', role: 'status' },
      report.ready ? 'Ready: every projection is within ' : 'Not ready: ',
      report.ready ? `${report.max_lag_seconds} s of the head.` : (report.error || `a projection lags more than ${report.max_lag_seconds} s.`),
      report.head !== undefined ? ` Head position ${report.head}.` : ''));
    body.push(h('p', { class: 'muted' },
      `From GET /readyz every ${OPS_EVERY_MS / 1000} s; the charts show lag since this tab began sampling (at most the last ${OPS_WINDOW_MS / 60000} minutes).`));
    const cards = (report.projections || []).map((p) => projectionCard(p, report.head));
    body.push(h('div', { class: 'projections', id: 'ops-projections' }, cards));
    if (!app.caps.deadLetters) {
      // The metrics role: the counts only; the letters are an admin's.
      body.push(h('section', { class: 'card', 'aria-labelledby': 'dead-title' },
        h('h2', { id: 'dead-title' }, 'Dead letters'),
        h('p', {}, 'Pending per projection: ',
          (report.projections || []).map((p) => `${p.projection} ${p.dead_letters_pending}`).join(', ') || '—', '.'),
        h('p', { class: 'muted' }, 'Listing, retrying and skipping them takes an admin token (or ',
          h('code', {}, 'ticket-projector dead-letters list|retry|skip'), ').')));
    }
    const ops = $('#ops');
    if (ops) ops.replaceChildren(...body);
  }

  // ---- Ops: dead letters (admins) -----------------------------------------

  const OPEN_STATES = ['pending', 'retry'];

  async function loadDeadLetters() {
    let letters;
    try {
      letters = (await api('GET', '/projections/dead-letters')).data.dead_letters;
    } catch (error) {
      if (app.ops.error === problemText(error)) return;
      app.ops.error = problemText(error);
      drawDeadLetters();
      return;
    }
    const key = JSON.stringify(letters);
    if (key === app.ops.lettersKey) return;
    app.ops.letters = letters;
    app.ops.lettersKey = key;
    drawDeadLetters();
  }

  // Draws the dead letters, per projection; keeps the focus where it was.
  // Not while a skip waits for its confirmation or an action is in flight.
  function drawDeadLetters(force) {
    const section = $('#dead-letters');
    if (!section || ((app.ops.confirm || app.ops.busy) && !force)) return;
    const active = document.activeElement;
    const focused = active && section.contains(active) ? active.id : null;
    const letters = app.ops.letters;
    const children = [
      h('h2', { id: 'dead-title', tabindex: '-1' }, 'Dead letters'),
      h('p', { class: 'muted' },
        'Events a projection could not apply. A projection stops at one until it is retried (applied again, after an upgrade) or skipped (passed by for good: the ticket’s row moves to its version, nothing else changes).'),
      h('div', { id: 'dead-alert', class: 'alert error', role: 'alert', tabindex: '-1' }, app.ops.error),
      // Said through the polite announcer too (a region drawn anew is not read).
      h('div', { id: 'dead-done', class: 'alert ok' }, app.ops.done),
    ];
    if (letters === null) {
      children.push(h('p', { class: 'muted' }, 'Asking /projections/dead-letters…'));
    } else {
      for (const name of ['detail', 'list', 'dashboard']) {
        const mine = letters.filter((l) => l.projection === name);
        const open = mine.filter((l) => OPEN_STATES.includes(l.state));
        const closed = mine.filter((l) => !OPEN_STATES.includes(l.state));
        const history = closed.length
          ? h('details', { id: `dead-${name}-history`, open: Boolean(app.ops.opened[name]), ontoggle: (event) => { app.ops.opened[name] = event.target.open; } },
            h('summary', {}, `${closed.length} skipped or resolved`),
            letterTable(name, closed, false))
          : null;
        children.push(h('section', { class: 'dead-projection', 'data-dead-projection': name, 'aria-labelledby': `dead-${name}-title` },
          h('h3', { id: `dead-${name}-title` }, `${name}: ${open.length ? `${open.length} waiting` : 'none waiting'}`),
          open.length ? letterTable(name, open, true) : h('p', { class: 'muted' }, 'No dead letters waiting.'),
          history));
      }
    }
    section.replaceChildren(...children);
    if (focused) (document.getElementById(focused) || $('#dead-title')).focus();
  }

  function letterTable(name, letters, actions) {
    const columns = ['Position', 'Ticket', 'Event type', 'State', 'Recorded', 'Error'];
    if (actions) columns.push('Actions');
    return h('table', { class: 'letters' },
      h('caption', { class: 'visually-hidden' }, `${name}: ${actions ? 'dead letters waiting' : 'skipped or resolved dead letters'}`),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, letters.map((l) => h('tr', { id: `dl-${name}-${l.position}`, 'data-position': String(l.position), 'data-state': l.state },
        h('td', { class: 'mono nowrap', 'data-label': 'Position' }, String(l.position)),
        h('td', { class: 'mono wrap', 'data-label': 'Ticket' }, `${l.ticket_id} v${l.version}`),
        h('td', { class: 'mono nowrap', 'data-label': 'Event type' }, l.event_type),
        h('td', { class: 'nowrap', 'data-label': 'State' }, l.state),
        h('td', { 'data-label': 'Recorded' }, when(l.recorded_at)),
        h('td', { class: 'reason wrap', 'data-label': 'Error' }, l.reason),
        actions ? h('td', { 'data-label': 'Actions' }, letterActions(name, l)) : null))));
  }

  function letterActions(name, l) {
    const id = `dl-${name}-${l.position}`;
    if (app.ops.confirm === id) {
      return h('div', { class: 'confirm', role: 'group', 'aria-labelledby': `${id}-confirm-text`, onkeydown: (event) => { if (event.key === 'Escape') cancelSkip(id); } },
        h('p', { id: `${id}-confirm-text` },
          `Skip position ${l.position} in ${name} for good? The projection passes it by; only a rebuild would apply it later.`),
        h('div', { class: 'actions' },
          h('button', { type: 'button', id: `${id}-confirm`, class: 'danger', disabled: app.ops.busy, onclick: () => act(name, l, 'skip') }, 'Skip it'),
          h('button', { type: 'button', id: `${id}-cancel`, class: 'secondary', disabled: app.ops.busy, onclick: () => cancelSkip(id) }, 'Cancel')));
    }
    return h('div', { class: 'actions' },
      h('button', { type: 'button', id: `${id}-retry`, disabled: app.ops.busy || l.state === 'retry', 'aria-label': `Retry ${name} position ${l.position}`, onclick: () => act(name, l, 'retry') }, 'Retry'),
      h('button', { type: 'button', id: `${id}-skip`, class: 'secondary', disabled: app.ops.busy, 'aria-label': `Skip ${name} position ${l.position}…`, onclick: () => askSkip(id) }, 'Skip…'));
  }

  function askSkip(id) {
    app.ops.confirm = id;
    app.ops.done = '';
    drawDeadLetters(true);
    $(`#${id}-confirm`).focus();
  }

  function cancelSkip(id) {
    app.ops.confirm = null;
    drawDeadLetters(true);
    const skip = $(`#${id}-skip`);
    if (skip) skip.focus();
  }

  // POST .../retry or .../skip; the answer (or the problem) is said, and
  // the list read again.
  async function act(name, l, action) {
    const id = `dl-${name}-${l.position}`;
    app.ops.busy = true;
    app.ops.error = '';
    app.ops.done = '';
    drawDeadLetters(true);
    try {
      const { data } = await api('POST', `/projections/${name}/dead-letters/${l.position}/${action}`);
      const what = action === 'retry' ? 'marked for retry' : 'skipped';
      app.ops.done = data.already_passed
        ? `${name} position ${l.position}: ${what}. The projection is already past it (checkpoint ${data.live_checkpoint})${action === 'retry' ? ': only a rebuild applies it again' : ''}.`
        : `${name} position ${l.position}: ${what}. The projection stopped at it ${action === 'retry' ? 'applies it again' : 'carries on'} within a second.`;
      announce(app.ops.done);
    } catch (error) {
      app.ops.error = `${action === 'retry' ? 'Retry' : 'Skip'} of ${name} position ${l.position} failed: ${problemText(error)}`;
    }
    app.ops.busy = false;
    app.ops.confirm = null;
    app.ops.lettersKey = '';
    await loadDeadLetters();
    drawDeadLetters(true);
    if (app.ops.error) {
      $('#dead-alert').focus();
    } else {
      const again = $(`#${id}-${action === 'retry' ? 'retry' : 'skip'}`);
      (again && !again.disabled ? again : $('#dead-title')).focus();
    }
  }

  function projectionCard(p, head) {
    const bad = p.state.startsWith('stopped');
    const shadow = p.shadow || {};
    const rebuilding = shadow.building || shadow.rebuild;
    const rebuild = rebuilding
      ? h('div', { class: 'rebuild' },
        h('label', { for: `rebuild-${p.projection}` },
          `Rebuild: shadow at ${shadow.checkpoint} of ${head}` + (shadow.rebuild ? ` (${shadow.rebuild.state}, by ${shadow.rebuild.holder})` : '')),
        h('progress', { id: `rebuild-${p.projection}`, max: String(Math.max(1, head)), value: String(shadow.checkpoint) }))
      : h('p', { class: 'muted' }, `Shadow slot: ${shadow.state || '—'} (no rebuild running).`);
    const samples = app.ops.samples[p.projection] || [];
    return h('section', { class: 'card', 'data-projection': p.projection, 'aria-labelledby': `p-${p.projection}` },
      h('h2', { id: `p-${p.projection}` }, p.projection),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Position'), h('dd', { class: 'position' }, `${p.checkpoint} of ${p.head}`),
        h('dt', {}, 'Lag'), h('dd', { class: 'lag' }, `${p.lag_events} events, ${p.lag_seconds.toFixed(1)} s`),
        h('dt', {}, 'State'), h('dd', { class: bad ? 'state bad' : 'state' }, p.state),
        h('dt', {}, 'Holder'), h('dd', { class: 'mono' }, p.holder || '—'),
        h('dt', {}, 'Heartbeat'), h('dd', {}, when(p.last_heartbeat)),
        h('dt', {}, 'Dead letters'), h('dd', { class: 'dead' }, String(p.dead_letters_pending)),
        h('dt', {}, 'Version'), h('dd', {}, `${p.version.stored}/${p.version.code}`),
        p.last_error ? [h('dt', {}, 'Last error'), h('dd', { class: 'error' }, p.last_error)] : null),
      lagChart(p.projection, samples),
      h('p', { class: 'legend', 'aria-hidden': 'true' },
        h('span', { class: 'events' }, `events (peak ${Math.max(0, ...samples.map((s) => s.events))})`),
        h('span', { class: 'seconds' }, `seconds (peak ${Math.max(0, ...samples.map((s) => s.seconds)).toFixed(1)})`)),
      rebuild);
  }

  function lagChart(name, samples) {
    const width = 300;
    const height = 80;
    const maxEvents = Math.max(1, ...samples.map((s) => s.events));
    const maxSeconds = Math.max(1, ...samples.map((s) => s.seconds));
    const first = samples.length ? samples[0].at : 0;
    const span = Math.max(1, (samples.length ? samples[samples.length - 1].at : 0) - first);
    const line = (key, max) => samples
      .map((s) => `${((s.at - first) / span) * width},${height - 4 - (s[key] / max) * (height - 8)}`)
      .join(' ');
    const peakEvents = Math.max(0, ...samples.map((s) => s.events));
    const peakSeconds = Math.max(0, ...samples.map((s) => s.seconds));
    const minutes = (span / 60000).toFixed(1);
    return svg('svg', {
      class: 'chart', viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img',
      'aria-label': `${name} lag over the last ${minutes} minutes: at most ${peakEvents} events and ${peakSeconds.toFixed(1)} seconds`,
    },
    svg('polyline', { class: 'events', points: line('events', maxEvents), 'vector-effect': 'non-scaling-stroke' }),
    svg('polyline', { class: 'seconds', points: line('seconds', maxSeconds), 'vector-effect': 'non-scaling-stroke' }));
  }

  // ---- Start -------------------------------------------------------------

  window.addEventListener('hashchange', route);
  document.addEventListener('DOMContentLoaded', () => {
    $('#sign-out').addEventListener('click', () => {
      signedOut(null);
      announce('Signed out');
    });
    $('#skip').addEventListener('click', (event) => {
      event.preventDefault();
      $('#main').focus();
    });
    start();
  });
})();
