// The client against the running local system (see system.js): a `wx` shim stands in
// for the phone, the collect API, DynamoDB Local and the WeChat sandbox are real. Each
// test is one user (its own shim and storage) and checks what the server stored through
// the operator API's inventory, so the tests run one at a time (--test-concurrency=1,
// set in package.json and by the Go test).
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const minipush = require('../miniprogram_dist/index.js')
const { createWx } = require('./wx-shim.js')
const { system, stop, inventory } = require('./system.js')

test.after(stop)

async function newUser(opts) {
  const sys = await system()
  const phone = createWx(Object.assign({ sandbox: sys.wechat, appId: sys.appId }, opts))
  const client = minipush.create({ baseURL: sys.api, appId: sys.appId, wx: phone.wx })
  return { sys, phone, client }
}

// delta returns how the app's live grants changed while fn ran.
async function delta(sys, fn) {
  const before = await inventory(sys)
  await fn()
  const after = await inventory(sys)
  return { subscribe: after.subscribe - before.subscribe, form: after.form - before.form, prepay: after.prepay - before.prepay }
}

test('login: the first flush logs in with wx.login, later ones reuse the session', async () => {
  const { sys, phone, client } = await newUser()
  phone.answerNext({ [sys.template]: 'accept' })
  await client.requestSubscribe([sys.template])
  let r = await client.flush()
  assert.equal(phone.state.logins, 1)
  const session = phone.wx.getStorageSync('minipush.session')
  assert.match(session.token, /./)
  assert.ok(Date.parse(session.expiresAt) > Date.now() + 6 * 24 * 3600e3, 'sessions last 7 days')
  assert.equal(r.remaining, 0)

  client.harvestPrepay(await phone.newFormId('prepay'))
  r = await client.flush()
  assert.equal(r.accepted, 1)
  assert.equal(phone.state.logins, 1, 'a valid session is reused')

  // A session the server no longer takes (a rotated signing key, say) is answered 401:
  // the client logs in again once and the upload goes through.
  phone.wx.setStorageSync('minipush.session', { token: 'forged', expiresAt: session.expiresAt })
  client.harvestPrepay(await phone.newFormId('prepay'))
  r = await client.flush()
  assert.equal(r.accepted, 1)
  assert.equal(phone.state.logins, 2)
  assert.deepEqual(phone.grantPosts().slice(-2).map((p) => p.statusCode), [401, 200])
})

test('harvest: a form submit, a payment and a subscribe prompt become stored grants', async () => {
  const { sys, phone, client } = await newUser()
  const d = await delta(sys, async () => {
    const formId = await phone.newFormId('form')
    let pageRan = false
    const onSubmit = client.wrapSubmit(function (e) { pageRan = e.detail.formId === formId })
    onSubmit({ type: 'submit', detail: { formId, value: {} } })
    assert.ok(pageRan, 'the page handler runs with the same event')
    assert.ok(client.harvestPrepay(await phone.newFormId('prepay')))
    // acceptWithAudio is an accept; a reject is reported but becomes no grant.
    phone.answerNext({ [sys.template]: 'acceptWithAudio' })
    const res = await client.requestSubscribe([sys.template])
    assert.equal(res[sys.template], 'acceptWithAudio')
    assert.deepEqual(client.queue().map((it) => it.type), ['form', 'prepay', 'subscribe'])
    assert.deepEqual(client.queue()[2].results, { [sys.template]: 'accept' })
    const r = await client.flush()
    assert.deepEqual([r.accepted, r.rejected, r.remaining, r.error], [3, 0, 0, undefined])
  })
  assert.deepEqual(d, { subscribe: 1, form: 1, prepay: 1 })
})

test('subscriptionSettings reports the main switch and the kept choices', async () => {
  const { client } = await newUser({ settings: { mainSwitch: true, itemSettings: { T1: 'acceptWithAlert', T2: 'reject' } } })
  assert.deepEqual(await client.subscriptionSettings(), { mainSwitch: true, always: { T1: 'accept', T2: 'reject' } })
  const off = await newUser({ settings: { mainSwitch: false } })
  assert.equal((await off.client.subscriptionSettings()).mainSwitch, false)
  await assert.rejects(off.client.requestSubscribe([off.sys.template]), (e) => e.errCode === 20004)
  assert.equal(off.client.queue().length, 0)
})

test("DevTools' mock formId is dropped before it is queued", async () => {
  const { phone, client } = await newUser()
  let ran = 0
  client.wrapSubmit(() => ran++)({ detail: { formId: minipush.MOCK_FORM_ID } })
  assert.equal(client.harvestForm({ detail: { formId: 'the formId is a mock one' } }), false)
  assert.equal(client.harvestForm({ detail: {} }), false)
  assert.equal(ran, 1, 'the page handler still runs')
  assert.deepEqual(client.queue(), [])
  const r = await client.flush()
  assert.equal(r.batches, 0)
  assert.equal(phone.state.requests.length, 0, 'nothing to send, no request, no login')
})

test('offline: grants wait in storage, survive a restart and go when the network is back', async () => {
  const { sys, phone, client } = await newUser()
  await client.flush() // starts watching the network
  phone.setOnline(false)
  const d = await delta(sys, async () => {
    client.harvestPrepay(await phone.newFormId('prepay'))
    client.harvestForm({ detail: { formId: await phone.newFormId('form') } })
    const r = await client.flush()
    assert.equal(r.error, 'offline')
    assert.equal(r.remaining, 2)
    assert.equal(phone.grantPosts().length, 0, 'no upload is tried offline')
  })
  assert.deepEqual(d, { subscribe: 0, form: 0, prepay: 0 })

  // The app is killed and started again on the same phone: a new client, same storage.
  const again = createWx({ sandbox: sys.wechat, appId: sys.appId, storage: phone.storage, openid: phone.state.openid })
  const client2 = minipush.create({ baseURL: sys.api, appId: sys.appId, wx: again.wx })
  again.state.online = false
  assert.equal((await client2.flush()).remaining, 2)
  const d2 = await delta(sys, async () => {
    // The network comes back: onNetworkStatusChange starts a flush by itself, and a
    // flush called meanwhile shares that upload.
    again.setOnline(true)
    const r = await client2.flush()
    assert.deepEqual([r.accepted, r.remaining], [2, 0])
    assert.equal(again.grantPosts().length, 1)
  })
  assert.deepEqual(d2, { subscribe: 0, form: 1, prepay: 1 })
})

test('batches: 120 formIds go up as 50 + 50 + 20 items', async () => {
  const { sys, phone, client } = await newUser()
  const ids = []
  for (let i = 0; i < 120; i++) ids.push(await phone.newFormId('form'))
  const d = await delta(sys, async () => {
    ids.forEach((formId) => client.harvestForm({ detail: { formId } }))
    const r = await client.flush()
    assert.deepEqual([r.batches, r.accepted, r.remaining], [3, 120, 0])
  })
  assert.deepEqual(phone.grantPosts().map((p) => p.body.grants.length), [50, 50, 20])
  assert.equal(d.form, 120)
})

test('batches also stop at 99 grants (three-template subscribe items)', () => {
  const q = []
  for (let i = 0; i < 40; i++) q.push({ type: 'subscribe', key: 'k' + i, results: { A: 'accept', B: 'accept', C: 'accept' } })
  assert.equal(minipush.nextBatch(q).length, 33) // 99 grants
  assert.equal(minipush.nextBatch(q.slice(33)).length, 7)
  const forms = Array.from({ length: 70 }, (_, i) => ({ type: 'form', formId: 'f' + i, key: 'k' + i }))
  assert.equal(minipush.nextBatch(forms).length, minipush.MAX_BATCH)
})

test('a lost answer: the retry carries the same keys and the server stores each grant once', async () => {
  const { sys, phone, client } = await newUser()
  phone.answerNext({ [sys.template]: 'accept' })
  await client.requestSubscribe([sys.template]) // its own flush logs in and uploads
  await client.flush()
  const d = await delta(sys, async () => {
    phone.answerNext({ [sys.template]: 'accept' })
    phone.dropAnswer('/v1/grants')
    await client.requestSubscribe([sys.template])
    // The prompt started an upload; the server handles it, its answer is lost.
    let r = await client.flush()
    assert.match(r.error, /timeout/)
    assert.equal(r.remaining, 1, 'no answer: the item stays queued')
    client.harvestForm({ detail: { formId: await phone.newFormId('form') } })
    r = await client.flush()
    const posts = phone.grantPosts()
    const lost = posts.find((p) => p.dropped)
    assert.equal(lost.statusCode, 200, 'the server handled the lost request')
    assert.equal(lost.data.accepted, 1)
    const retry = posts[posts.indexOf(lost) + 1]
    assert.equal(retry.body.grants[0].key, lost.body.grants[0].key, 'the retry carries the same key')
    assert.equal(retry.data.results[0].status, 'duplicate', 'the server deduplicated the retry')
    assert.equal(retry.data.results[1].status, 'accepted')
    assert.equal(client.queue().length, 0)
    assert.deepEqual([r.accepted, r.duplicate], [1, 1])
  })
  assert.deepEqual(d, { subscribe: 1, form: 1, prepay: 0 }, 'one subscribe grant, not two')
})
