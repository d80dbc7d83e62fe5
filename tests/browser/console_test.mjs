// The console's scenario in a real browser (issue 9), run by
// test_console.sh against a running gridgate. Plain node with node:assert
// and playwright-core (from GG_NODE_MODULES), driving Debian's chromium.
//
// A smoke reading opens a case that appears in the open list without a
// reload; a commander dispatches it, the firefighter gives feedback, the
// supervisor fails then passes verification, the commander evaluates and
// closes; the timeline shows every step; staff of another grid sees none
// of it; a title with HTML in it is shown as text; a stale submit is
// refused and offered a reload; the figures match /stats; the language
// choice survives a reload while the token stays in the tab's session.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run through test_console.sh)`);
  return v;
};
const require = createRequire(path.join(env('GG_NODE_MODULES'), 'x.js'));
const { chromium } = require('playwright-core');

const BASE = env('GG_BASE');
const GRID = env('GG_GRID');
const SHOTS = env('GG_SHOTS');
const tokens = {
  commander: env('GG_TOKEN_COMMANDER'),
  staff: env('GG_TOKEN_STAFF'),
  supervisor: env('GG_TOKEN_SUPERVISOR'),
  other: env('GG_TOKEN_OTHER'),
};
const WAIT = 15000 * Number(process.env.GG_SLOW || 1);
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 860 };

let passed = 0;
const failures = [];
async function check(what, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${what} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures.push(what);
    console.log(`FAIL ${what}: ${e.stack || e}`);
    for (const p of problems) console.log(`     seen in the browser: ${p}`);
    throw e; // the steps build on each other
  }
}

// The API directly, for what the page must agree with.
async function api(token, method, p, body) {
  const res = await fetch(`${BASE}/api/v1/${p}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => null);
  return { status: res.status, data };
}

const browser = await chromium.launch({
  executablePath: env('GG_CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});

const problems = []; // script errors and CSP violations, on any page

// A signed-in page of its own (its own sessionStorage), at a viewport size.
async function open(who, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  const page = await context.newPage();
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window.__csp ||= []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`${who}: console: ${m.text()}`);
  });
  await page.goto(`${BASE}/console/`);
  await page.locator('#token').fill(tokens[who]);
  await page.locator('#signin button[type=submit]').click();
  await page.locator('#who, #nav-cases').first().waitFor({ timeout: WAIT });
  return page;
}

// Nothing wider than the window: no sideways scrolling on a phone.
const fitsWidth = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
const cspOf = (page) => page.evaluate(() => window.__csp || []);
const timelineStates = (page) => page.$$eval('#timeline li', (lis) => lis.map((li) => li.dataset.to));
const renderedOps = (page) => page.$$eval('#actions form', (fs) => fs.map((f) => f.dataset.op));

async function waitTimeline(page, n) {
  await page.waitForFunction((k) => document.querySelectorAll('#timeline li').length === k, n, { timeout: WAIT });
}

// The ops drawn are exactly the API's "actions" for this token now.
async function assertOps(page, who, id, expected) {
  const { data } = await api(tokens[who], 'GET', `cases/${id}`);
  assert.deepEqual(data.actions, expected, `the API's actions for ${who}`);
  await page.waitForFunction((ops) => JSON.stringify([...document.querySelectorAll('#actions form')]
    .map((f) => f.dataset.op)) === JSON.stringify(ops), expected, { timeout: WAIT });
  assert.deepEqual(await renderedOps(page), expected, `the forms drawn for ${who}`);
}

async function act(page, op, { note, role, score, button } = {}) {
  const form = page.locator(`#actions form[data-op="${op}"]`);
  await form.waitFor({ timeout: WAIT });
  if (note != null) await form.locator('textarea[name=note]').fill(note);
  if (role) await form.locator('select[name=role]').selectOption(role);
  if (score) await form.locator('select[name=score]').selectOption(String(score));
  await form.locator(button ? `button[value="${button}"]` : 'button[type=submit]').click();
}

async function gotoCase(page, id) {
  await page.evaluate((i) => { location.hash = `#/cases/${i}`; }, id);
  await page.locator('#case-title').waitFor({ timeout: WAIT });
}

let caseId;
let commander, staff, supervisor;

try {
  await check('/ redirects to /console/', async () => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => problems.push(`console: ${m.text()}`));
    const res = await page.goto(`${BASE}/`);
    assert.equal(new URL(page.url()).pathname, '/console/');
    assert.match(res.headers()['content-security-policy'] || '', /script-src 'self'/);
    await page.locator('#signin').waitFor({ timeout: WAIT });
    await page.close();
  });

  await check('a bad token is refused on the sign-in screen', async () => {
    const page = await browser.newPage();
    await page.goto(`${BASE}/console/`);
    await page.locator('#token').fill('gg_not-a-token');
    await page.locator('#signin button[type=submit]').click();
    await page.waitForFunction(() => document.querySelector('#signin-error')?.textContent.length > 0, null, { timeout: WAIT });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'nothing kept after a refused token');
    await page.close();
  });

  await check('the commander signs in: /me is shown, the token is in sessionStorage only', async () => {
    commander = await open('commander');
    const who = await commander.locator('#who').textContent();
    assert.match(who, /centre/);
    assert.match(who, /指挥中心/);
    const store = await commander.evaluate(() => ({
      session: Object.values(sessionStorage), local: JSON.stringify(localStorage), url: location.href,
    }));
    assert.ok(store.session.includes(tokens.commander), 'the token in sessionStorage');
    assert.ok(!store.local.includes(tokens.commander), 'no token in localStorage');
    assert.ok(!store.url.includes(tokens.commander), 'no token in the URL');
    await commander.locator('#list-empty').waitFor({ timeout: WAIT });
  });

  await check('a smoke reading opens a case that appears in the open list without a reload', async () => {
    await commander.evaluate(() => { window.__sameDocument = true; });
    execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', env('GG_MQTT_PORT'), '-q', '1',
      '-t', `devices/${env('GG_DEVICE')}/telemetry`, '-m', '{"smoke": 0.42, "alarm": true}']);
    const row = commander.locator('#case-list tr[data-case-id]');
    await row.first().waitFor({ timeout: WAIT });
    assert.equal(await commander.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
    caseId = Number(await row.first().getAttribute('data-case-id'));
    assert.ok(caseId > 0);
    const text = await row.first().textContent();
    assert.match(text, /采集上报/, 'state reported, in Chinese');
    const { data } = await api(tokens.commander, 'GET', `cases/${caseId}`);
    assert.equal(data.case.category, 'fire.smoke');
    assert.ok(text.includes(data.case.title), 'the title shown');
  });

  await check('the case page: grid, roster, trigger, provenance, Grafana link, only dispatch and cancel', async () => {
    await commander.locator(`#case-list tr[data-case-id="${caseId}"] a.case-title`).click();
    await commander.locator('#case-title').waitFor({ timeout: WAIT });
    assert.ok(commander.url().endsWith(`#/cases/${caseId}`));
    const { data: g } = await api(tokens.commander, 'GET', `grids/${GRID}`);
    const gridBox = await commander.locator('#grid-box').textContent();
    for (const s of [g.grid.street, g.grid.community, g.grid.roster.firefighter]) assert.ok(gridBox.includes(s), `grid box has ${s}`);
    assert.ok(/住宅|商务商业|企事业单位|人员密集场所/.test(gridBox), 'grid type in Chinese');
    const trigger = await commander.locator('#trigger-box').textContent();
    assert.match(trigger, /fire\.smoke/);
    assert.match(trigger, /fire\.lua:\d+/);
    assert.match(trigger, /smoke/);
    assert.match(trigger, /0\.42/);
    const href = await commander.locator('#grafana-link').getAttribute('href');
    assert.ok(href.startsWith('http://127.0.0.1:3000/'), `Grafana link ${href}`);
    assert.ok(href.includes(`var-grid=${GRID}`), `Grafana link names the grid: ${href}`);
    assert.ok(!/[{}]/.test(decodeURI(href)) && href.includes(`var-street=${g.grid.street_id}`), `every variable filled: ${href}`);
    await assertOps(commander, 'commander', caseId, ['dispatch', 'cancel']);
    assert.deepEqual(await timelineStates(commander), ['reported']);
  });

  await check('the commander dispatches it to the firefighter', async () => {
    await act(commander, 'dispatch', { role: 'firefighter', note: '派网格消防员' });
    await waitTimeline(commander, 2);
    const left = await commander.locator('#time-left').textContent();
    assert.match(left, /剩余/, `time left shown: ${left}`);
    assert.match(await commander.locator('#escalation').textContent(), /社区/);
    await assertOps(commander, 'commander', caseId, ['defer']);
  });

  await check('the firefighter (phone) gives feedback', async () => {
    staff = await open('staff', PHONE);
    await staff.locator(`#case-list tr[data-case-id="${caseId}"]`).waitFor({ timeout: WAIT });
    await gotoCase(staff, caseId);
    await assertOps(staff, 'staff', caseId, ['feedback', 'return']);
    await staff.screenshot({ path: path.join(SHOTS, 'console-case-phone.png'), fullPage: true });
    assert.ok(await fitsWidth(staff), 'the case page fits a phone\'s width');
    await act(staff, 'feedback', { note: '已扑灭，开窗通风' });
    await waitTimeline(staff, 3);
    await assertOps(staff, 'staff', caseId, []);
  });

  await check('the supervisor fails verification: a note is required, then rework', async () => {
    supervisor = await open('supervisor');
    await gotoCase(supervisor, caseId);
    await assertOps(supervisor, 'supervisor', caseId, ['verify']);
    await act(supervisor, 'verify', { button: 'fail' });
    const err = supervisor.locator('#actions form[data-op="verify"] .form-error');
    await supervisor.waitForFunction(() => document.querySelector('#actions form[data-op="verify"] .form-error')
      ?.textContent.includes('note'), null, { timeout: WAIT });
    assert.match(await err.textContent(), /请求有误/);
    await act(supervisor, 'verify', { note: '仍有烟味', button: 'fail' });
    await waitTimeline(supervisor, 4);
    const tl = await supervisor.locator('#timeline').textContent();
    assert.match(tl, /返工/);
    assert.match(tl, /仍有烟味/);
  });

  await check('the firefighter\'s open page updates by itself; feedback again', async () => {
    await waitTimeline(staff, 4); // no reload: the case page polls
    await assertOps(staff, 'staff', caseId, ['feedback', 'return']);
    await act(staff, 'feedback', { note: '查明原因：锅具干烧' });
    await waitTimeline(staff, 5);
  });

  await check('the supervisor passes verification', async () => {
    await waitTimeline(supervisor, 5);
    await act(supervisor, 'verify', { button: 'pass' });
    await waitTimeline(supervisor, 6);
  });

  await check('the commander evaluates and closes; the timeline shows every step', async () => {
    await waitTimeline(commander, 6);
    await assertOps(commander, 'commander', caseId, ['evaluate']);
    await act(commander, 'evaluate', { score: 4, note: '处置及时' });
    await waitTimeline(commander, 7);
    await act(commander, 'close', { note: '归档' });
    await waitTimeline(commander, 8);
    assert.deepEqual(await timelineStates(commander),
      ['reported', 'dispatched', 'handled', 'dispatched', 'handled', 'verified', 'evaluated', 'closed']);
    const tl = await commander.locator('#timeline').textContent();
    for (const actor of ['rule:fire.smoke', 'commander:centre', 'staff:ff-1', 'supervisor:sup-1']) {
      assert.ok(tl.includes(actor), `the timeline names ${actor}`);
    }
    assert.match(tl, /结单归档/);
    await assertOps(commander, 'commander', caseId, []);
    assert.equal((await api(tokens.commander, 'GET', `cases/${caseId}`)).data.case.score, 4);
    await commander.screenshot({ path: path.join(SHOTS, 'console-case.png'), fullPage: true });
  });

  await check('a closed case leaves the open list', async () => {
    await commander.evaluate(() => { location.hash = '#/cases'; });
    await commander.locator('#list-empty').waitFor({ timeout: WAIT });
  });

  const html = '<img src=x onerror="window.__xss=1"><b>粗体</b> 楼道堆物';
  let htmlId;
  await check('a title with HTML in it is shown as text, in the list and on its page', async () => {
    const r = await api(tokens.staff, 'POST', 'cases', { grid_id: GRID, category: 'public.clutter', title: html,
      detail: '<script>window.__xss=2</script>', severity: 'major' });
    assert.equal(r.status, 201);
    htmlId = r.data.case.id;
    const title = commander.locator(`#case-list tr[data-case-id="${htmlId}"] .case-title`);
    await title.waitFor({ timeout: WAIT });
    assert.equal(await title.textContent(), html);
    assert.equal(await commander.locator('#case-list img, #case-list b, #case-list script').count(), 0);
    await gotoCase(commander, htmlId);
    assert.ok((await commander.locator('#case-title').textContent()).includes(html));
    assert.ok((await commander.locator('#case').textContent()).includes('<script>window.__xss=2</script>'));
    assert.equal(await commander.locator('#case img, #case b, #case script').count(), 0);
    assert.equal(await commander.evaluate(() => window.__xss), undefined);
  });

  await check('a submit on a case changed meanwhile is refused as stale, with a reload', async () => {
    // The commander starts a dispatch (the form is being filled in, so the
    // page does not redraw); meanwhile the case is dispatched elsewhere.
    await commander.locator('#actions form[data-op="dispatch"] textarea[name=note]').fill('派网格管理员');
    const { data } = await api(tokens.commander, 'GET', `cases/${htmlId}`);
    const r = await api(tokens.commander, 'POST', `cases/${htmlId}/dispatch`, { role: 'manager', version: data.case.version });
    assert.equal(r.status, 200);
    await commander.locator('#case-banner button.reload').waitFor({ timeout: WAIT });
    await commander.locator('#actions form[data-op="dispatch"] button[type=submit]').click();
    const err = commander.locator('#actions form[data-op="dispatch"] .form-error');
    await err.locator('button.reload').waitFor({ timeout: WAIT });
    assert.match(await err.textContent(), /重新载入/);
    await err.locator('button.reload').click();
    await waitTimeline(commander, 2);
    await assertOps(commander, 'commander', htmlId, ['defer']);
  });

  await check('staff of another grid sees none of it: empty list, the case page not found', async () => {
    const other = await open('other', PHONE);
    await other.locator('#list-empty').waitFor({ timeout: WAIT });
    assert.equal(await other.locator('#case-list tr[data-case-id]').count(), 0);
    for (const id of [caseId, htmlId]) {
      await other.evaluate((i) => { location.hash = `#/cases/${i}`; }, id);
      await other.locator('#case-notfound').waitFor({ timeout: WAIT });
      assert.equal(await other.locator('#case-title').count(), 0);
    }
    assert.deepEqual(await cspOf(other), []);
    await other.context().close();
  });

  await check('the figures page shows /stats for the scope, per grid', async () => {
    await commander.evaluate(() => { location.hash = '#/figures'; });
    await commander.locator('#stats-table').waitFor({ timeout: WAIT });
    const { data } = await api(tokens.commander, 'GET', 'stats');
    const row = data.figures[0];
    const closure = await commander.locator('#fig-closure .tile-value').textContent();
    const expected = row.closure_rate == null ? '—' : `${(row.closure_rate * 100).toFixed(1)}%`;
    assert.equal(closure, expected);
    assert.equal(await commander.locator('#fig-overdue .tile-value').textContent(), String(row.overdue_now));
    assert.equal(await commander.locator('#fig-open .tile-value').textContent(), '1', 'the dispatched report is open');
    const gridRow = await commander.locator(`#stats-table tr[data-key="${GRID}"]`).textContent();
    const { data: g } = await api(tokens.commander, 'GET', `grids/${GRID}`);
    assert.ok(gridRow.includes(g.grid.name), 'the grid named in its row');
    await commander.screenshot({ path: path.join(SHOTS, 'console-figures.png'), fullPage: true });
  });

  await check('the open list is sorted by urgency: overdue first, then critical > major > minor > info', async () => {
    const ids = {};
    for (const [severity, title] of [['info', '路灯不亮'], ['critical', '燃气泄漏报警'], ['minor', '井盖松动'],
      ['info', '绿地积水']]) {
      const r = await api(tokens.commander, 'POST', 'cases', { grid_id: GRID, category: 'public.report', title, severity });
      assert.equal(r.status, 201);
      ids[title] = r.data.case.id;
    }
    // The last one dispatched, with the 2 s info limit of this test's
    // config, runs late: it must come first, whatever its severity.
    const late = ids['绿地积水'];
    assert.equal((await api(tokens.commander, 'POST', `cases/${late}/dispatch`, { role: 'manager' })).status, 200);
    await commander.evaluate(() => { location.hash = '#/cases'; });
    const expected = [late, ids['燃气泄漏报警'], htmlId, ids['井盖松动'], ids['路灯不亮']];
    await commander.waitForFunction((want) => JSON.stringify([...document.querySelectorAll('#case-list tr[data-case-id]')]
      .map((tr) => Number(tr.dataset.caseId))) === JSON.stringify(want), expected, { timeout: WAIT });
    const first = commander.locator(`#case-list tr[data-case-id="${late}"]`);
    assert.match(await first.getAttribute('class'), /late/);
    assert.match(await first.textContent(), /已超时/);
    await commander.screenshot({ path: path.join(SHOTS, 'console-list.png'), fullPage: true });
    // At phone size from the start (the filters fold away on a phone).
    await commander.setViewportSize(PHONE);
    await commander.reload();
    await commander.locator(`#case-list tr[data-case-id="${late}"]`).waitFor({ timeout: WAIT });
    assert.equal(await commander.locator('details.filter-box').getAttribute('open'), null, 'filters folded on a phone');
    await commander.screenshot({ path: path.join(SHOTS, 'console-list-phone.png'), fullPage: true });
    assert.ok(await fitsWidth(commander), 'the list fits a phone\'s width');
    await commander.setViewportSize(DESKTOP);
  });

  await check('English is one click away and survives a reload; the token stays in the session', async () => {
    await commander.evaluate(() => { location.hash = '#/cases'; });
    await commander.locator('#lang').click();
    await commander.waitForFunction(() => document.querySelector('#nav-cases')?.textContent === 'Cases', null, { timeout: WAIT });
    await commander.reload();
    await commander.waitForFunction(() => document.querySelector('#nav-cases')?.textContent === 'Cases', null, { timeout: WAIT });
    assert.equal(await commander.evaluate(() => document.documentElement.lang), 'en');
    await commander.locator(`#case-list tr[data-case-id="${htmlId}"]`).waitFor({ timeout: WAIT });
    assert.match(await commander.locator(`#case-list tr[data-case-id="${htmlId}"]`).textContent(), /dispatched/);
    await commander.screenshot({ path: path.join(SHOTS, 'console-list-en.png') });
    await commander.locator('#lang').click();
    await commander.waitForFunction(() => document.querySelector('#nav-cases')?.textContent === '事件', null, { timeout: WAIT });
  });

  await check('sign out clears the session', async () => {
    await commander.locator('#signout').click();
    await commander.locator('#signin').waitFor({ timeout: WAIT });
    assert.equal(await commander.evaluate(() => sessionStorage.length), 0);
  });

  await check('no script error and no CSP violation on any page', async () => {
    for (const p of [commander, staff, supervisor]) assert.deepEqual(await cspOf(p), []);
    assert.deepEqual(problems, []);
  });
} catch {
  // reported by check()
} finally {
  await browser.close();
}

for (const name of ['console-list.png', 'console-list-phone.png', 'console-list-en.png', 'console-case.png',
  'console-case-phone.png', 'console-figures.png']) {
  console.log(`screenshot: ${path.join(SHOTS, name)}`);
}
console.log(`console: ${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
