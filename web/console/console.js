// The console's entry: signing in and out, the header, hash routing
// (#/cases, #/cases/42, #/figures: the URLs Grafana's case tables link to)
// and the clock that keeps every "time left" current.
import { ApiError, me, grids, onUnauthorized, session } from './api.js';
import { append, fill, h } from './dom.js';
import { lang, name, setLang, t } from './i18n.js';
import { errorText, scopeLabel, tickAll } from './ui.js';
import { caseView } from './view_case.js';
import { figuresView } from './view_figures.js';
import { listView } from './view_list.js';

const root = document.getElementById('app');
let ctx = null;        // {me, grids: Map id -> grid, streets, communities} once signed in
let view = null;       // the view shown: {stop()}
let notice = '';       // a message for the sign-in screen

// A token refused while signed in (revoked, or the gateway's tokens file
// changed): back to the sign-in screen. While signing in, the form says it.
onUnauthorized(() => {
  if (!ctx) return;
  session.signOut();
  ctx = null;
  notice = t('signin.expired');
  render();
});

// Loads who the token is and the places in its scope.
async function loadContext() {
  let who;
  try {
    who = await me();
  } catch (e) {
    // A gateway without /me still works; the page only knows less.
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
    who = { name: null, role: null, scope: null, links: {} };
  }
  const list = await grids();
  const byId = new Map(), streets = new Map(), communities = new Map();
  for (const g of list) {
    byId.set(g.id, g);
    streets.set(g.street_id, g.street);
    communities.set(g.community_id, { name: g.community, street_id: g.street_id });
  }
  return { me: who, grids: byId, streets, communities };
}

function signInView() {
  const input = h('input', {
    type: 'password', name: 'token', id: 'token', autocomplete: 'off', spellcheck: 'false',
    required: true, autofocus: true,
  });
  const msg = h('p', { class: 'form-error', role: 'alert', id: 'signin-error' }, notice);
  const button = h('button', { type: 'submit', class: 'primary' }, t('signin.submit'));
  const form = h('form', { class: 'signin card', id: 'signin', novalidate: true },
    h('h1', {}, t('signin.title')),
    h('label', { for: 'token', class: 'field' }, h('span', { class: 'field-label' }, t('signin.token')), input),
    h('p', { class: 'hint' }, t('signin.hint')),
    button, msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    button.disabled = true;
    session.signIn(token);
    try {
      ctx = await loadContext();
      notice = '';
      input.value = '';
      render();
    } catch (e) {
      session.signOut();
      ctx = null;
      fill(msg, e instanceof ApiError && e.status === 401 ? t('signin.refused') : errorText(e));
      button.disabled = false;
    }
  });
  return { el: form, stop() {} };
}


function header() {
  const who = ctx?.me;
  const here = location.hash.startsWith('#/figures') ? 'figures' : 'cases';
  const nav = ctx ? h('nav', { class: 'nav' },
    h('a', { href: '#/cases', class: here === 'cases' ? 'active' : null, id: 'nav-cases' }, t('nav.cases')),
    h('a', { href: '#/figures', class: here === 'figures' ? 'active' : null, id: 'nav-figures' }, t('nav.figures'))) : null;
  const identity = who && who.name ? h('div', { class: 'who', id: 'who' },
    h('span', { class: 'who-name' }, who.name),
    h('span', { class: 'who-role' }, name('token', who.role)),
    who.post ? h('span', { class: 'who-post' }, [name('role', who.post), who.person].filter(Boolean).join(' ')) : null,
    who.scope ? h('span', { class: 'who-scope' }, scopeLabel(who.scope)) : null) : null;
  const langButton = h('button', { type: 'button', class: 'link', id: 'lang' }, t('lang.switch'));
  langButton.addEventListener('click', () => {
    setLang(lang() === 'en' ? 'zh-CN' : 'en');
    render();
  });
  const out = ctx ? h('button', { type: 'button', class: 'link', id: 'signout' }, t('nav.signout')) : null;
  out?.addEventListener('click', () => {
    session.signOut();
    ctx = null;
    notice = t('signin.signedout');
    location.hash = '#/cases';
    render();
  });
  return h('header', { class: 'top' },
    h('a', { href: '#/cases', class: 'brand' }, t('app.title')),
    nav, identity, h('div', { class: 'top-tools' }, langButton, out));
}


// The route in the hash: {path: ['cases', '42'], params: URLSearchParams}.
function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return { path: path.split('/').filter(Boolean), params: new URLSearchParams(query || '') };
}

async function render() {
  view?.stop();
  view = null;
  document.title = t('app.title');
  if (session.token() && !ctx) {
    fill(root, header(), h('main', { class: 'main' }, h('p', { class: 'loading' }, t('loading'))));
    try {
      ctx = await loadContext();
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) {
        fill(root, header(), h('main', { class: 'main' }, h('p', { class: 'form-error', role: 'alert' }, errorText(e))));
        return;
      }
      session.signOut();
      notice = t('signin.expired');
    }
  }
  if (!ctx) {
    view = signInView();
  } else {
    const { path, params } = route();
    if (path[0] === 'cases' && /^[1-9][0-9]*$/.test(path[1] || '')) view = caseView(ctx, Number(path[1]));
    else if (path[0] === 'figures') view = figuresView(ctx, params);
    else if (path[0] === 'cases' && path.length === 1) view = listView(ctx, params);
    else {
      location.replace('#/cases');
      return;
    }
  }
  fill(root, header(), append(h('main', { class: 'main' }), view.el));
}



setInterval(tickAll, 1000);

window.addEventListener('hashchange', render);
render();
