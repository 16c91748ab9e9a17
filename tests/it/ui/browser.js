// Drives the dashboard in headless Chromium (Debian's /usr/bin/chromium,
// through npm playwright-core). Run by tests/it/ui/browser.rs; arguments
// come as JSON in $PG_UI_TEST:
//   { phase: "rollback" | "pages", url, token, modules, artifacts,
//     profile, expected: { groups: [...], live: [...] }, hostileId }
// Phase "rollback": signs in, sees the canary live on the rollout page,
// sends traffic until the page shows the analyzer's rollback.
// Phase "pages": every page loads; the overview's figures equal the
// expected ones (from pyarrow and /metrics); a table row opens its call
// page and Back returns; the hostile answer is text. Screenshots of each
// page go to `artifacts`. The cost page loads; the hostile call is queued
// from its page and labelled through the review form. Any console error or
// page error fails.
'use strict';
const path = require('path');
const cfg = JSON.parse(process.env.PG_UI_TEST);
const { chromium } = require(path.join(cfg.modules, 'playwright-core'));

const problems = [];
function check(cond, what) {
  if (!cond) problems.push(what);
}

async function signIn(page) {
  await page.goto(cfg.url + '/ui');
  check(page.url().includes('/ui/login'), 'without the token /ui goes to the login form: ' + page.url());
  await page.fill('input[name=token]', cfg.token);
  await Promise.all([page.waitForNavigation(), page.click('#login button')]);
  check(new URL(page.url()).pathname === '/ui', 'after signing in: ' + page.url());
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(cfg.artifacts, name + '.png'), fullPage: true });
}

async function cells(page, table) {
  return page.$$eval(`#${table} tr.row`, (rows) => rows.map((r) => {
    const o = { prompt: r.dataset.prompt, variant: r.dataset.variant };
    for (const td of r.querySelectorAll('td[data-field]')) o[td.dataset.field] = td.textContent.trim();
    return o;
  }));
}

async function rollback(page) {
  await page.goto(cfg.url + '/ui/rollout');
  const canary = await page.textContent('#canary');
  check(canary.includes('weight') && canary.includes('50%'), 'the canary is live at 50%: ' + canary);
  await shot(page, 'rollout-canary');
  const deadline = Date.now() + 90000;
  let sent = 0;
  for (;;) {
    const batch = [];
    for (let i = 0; i < 16; i++, sent++) {
      const country = ['France', 'Japan', 'Peru', 'Kenya', 'Norway', 'Chile'][sent % 6];
      batch.push(fetch(cfg.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'prompt:capital', variables: { country }, user: 'user-' + sent }),
      }).then((r) => check(r.status === 200, 'traffic status ' + r.status)));
    }
    await Promise.all(batch);
    await page.goto(cfg.url + '/ui/rollout');
    // The revert commit first, then the proxy's reload of it.
    const reverted = (await page.$$('#history tr.rollback')).length > 0;
    if (reverted && (await page.textContent('#canary')).trim() === 'none') break;
    if (Date.now() > deadline) {
      check(false, `no rollback on the rollout page after ${sent} calls`);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const decision = await page.textContent('#decision');
  check(decision.includes('rollback'), 'the last round says rollback: ' + decision);
  await shot(page, 'rollout-rollback');
}

async function pages(page) {
  await page.goto(cfg.url + '/ui?window=1h');
  const shown = await cells(page, 'figures');
  check(shown.length === cfg.expected.groups.length,
    `overview rows: ${JSON.stringify(shown)} vs ${JSON.stringify(cfg.expected.groups)}`);
  for (const want of cfg.expected.groups) {
    const got = shown.find((g) => g.prompt === want.prompt && g.variant === want.variant) || {};
    for (const [k, v] of Object.entries(want)) {
      check(got[k] === v, `overview ${want.prompt}/${want.variant} ${k}: shown ${got[k]}, logs say ${v}`);
    }
  }
  const live = await cells(page, 'live');
  for (const want of cfg.expected.live) {
    const got = live.find((g) => g.prompt === want.prompt && g.variant === want.variant) || {};
    for (const [k, v] of Object.entries(want)) {
      check(got[k] === v, `live ${want.prompt}/${want.variant} ${k}: shown ${got[k]}, /metrics says ${v}`);
    }
  }
  check((await page.$$('svg')).length >= 10, 'the overview draws its charts');
  await shot(page, 'overview');

  await page.goto(cfg.url + '/ui/calls?window=1h');
  await shot(page, 'calls');
  const first = await page.$('#calls tr.row');
  const id = await first.getAttribute('data-request-id');
  await Promise.all([page.waitForNavigation(), page.click('#calls tr.row a.call-link')]);
  check(page.url().endsWith('/ui/calls/' + id), 'the row opens its call page: ' + page.url());
  check((await page.textContent('#request-id')).trim() === id, 'the call page shows its id');
  await page.goBack();
  check(new URL(page.url()).pathname === '/ui/calls', 'Back returns to the table: ' + page.url());
  check((await page.$$('#calls tr.row')).length > 0, 'the table is there again');

  await page.goto(cfg.url + '/ui/calls/' + cfg.hostileId);
  const output = await page.textContent('#output');
  check(output.includes('<script>window.__xss=1</script>'), 'the logged <script> shows as text: ' + output);
  check(output.includes('<img src=x onerror='), 'the logged <img onerror> shows as text');
  check((await page.$$('#output img, #output script')).length === 0, 'no element made from the answer');
  check(await page.evaluate(() => window.__xss === undefined), 'no script from the answer ran');
  await shot(page, 'call');

  for (const [name, url] of [['rollout', '/ui/rollout'], ['drift', '/ui/drift?window=24h']]) {
    const r = await page.goto(cfg.url + url);
    check(r.status() === 200, `${url}: HTTP ${r.status()}`);
    await shot(page, name);
  }
  const cost = await page.goto(cfg.url + '/ui/cost');
  check(cost.status() === 200, `/ui/cost: HTTP ${cost.status()}`);
  await shot(page, 'cost');
  await review(page);
}

// The call page's button queues the call; the review page's form records a
// label, after which the item shows decided and has no form.
async function review(page) {
  await page.goto(cfg.url + '/ui/calls/' + cfg.hostileId);
  await Promise.all([page.waitForNavigation(), page.click('#enqueue button')]);
  check(new URL(page.url()).pathname === '/ui/review', 'enqueue leads to the review page: ' + page.url());
  const item = `section[data-item-id="${cfg.hostileId}"]`;
  check((await page.$$(item + ' form.review-form')).length === 1, 'the queued call has a review form');
  check((await page.$$(item + ' pre img, ' + item + ' pre script')).length === 0, 'the answer is text');
  await page.check(item + ' input[value=label]');
  await page.fill(item + ' textarea[name=text]', 'hostile');
  await shot(page, 'review');
  await Promise.all([page.waitForNavigation(), page.click(item + ' button[type=submit]')]);
  const state = await page.textContent(item + ' h2');
  check(state.includes('decided: label by dashboard'), 'the decision shows on the page: ' + state);
  check((await page.$$(item + ' form')).length === 0, 'a decided item has no form');
  await shot(page, 'review-decided');
}

(async () => {
  const context = await chromium.launchPersistentContext(cfg.profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update'],
    viewport: { width: 1400, height: 900 },
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push('console error: ' + m.text());
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  try {
    await signIn(page);
    if (cfg.phase === 'rollback') await rollback(page);
    else await pages(page);
  } catch (e) {
    problems.push('exception: ' + (e && e.stack || e));
  } finally {
    await context.close();
  }
  if (problems.length) {
    console.error(problems.join('\n'));
    process.exit(1);
  }
  console.log(JSON.stringify({ ok: true, phase: cfg.phase }));
})();
