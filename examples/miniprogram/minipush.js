// minipush client for a WeChat mini-program: harvest send grants where users tap,
// keep them in a persistent queue, and upload them in batches the next time the app
// talks to the server. Plain JS, no dependencies; see README.md.
//
//   const minipush = require('./minipush.js')
//   minipush.init({ baseURL: 'https://api.example.com', appId: 'wx...' })
//   // a form with report-submit="true":  <form report-submit bindsubmit="onSubmit">
//   onSubmit(e) { minipush.harvestForm(e); ... }
//   // a subscribe prompt, on a user tap:
//   minipush.requestSubscribe(['TEMPLATE_ID']).then(...)
//   // after a payment:  minipush.harvestPrepay(prepayId)
//   // or wrap handlers and requests instead of calling the functions above:
//   onSubmit: minipush.wrapSubmit(function (e) { ... })
//   minipush.request({ url, data, success })  // wx.request that flushes the queue first

const QUEUE_KEY = 'minipush.queue'
const SESSION_KEY = 'minipush.session'
const MAX_BATCH = 50          // the server refuses more than 50 items per upload
const MAX_GRANTS = 99         // ... and more than 99 grants (one DynamoDB transaction)
const MAX_QUEUE = 500         // grants are one-time; an endless backlog helps nobody
const MOCK_FORM_ID = 'the formId is a mock one' // DevTools' fake formId: never usable

let config = { baseURL: '', appId: '' }
let uploading = null

function init(opts) {
  config = Object.assign({}, config, opts)
}

// A random idempotency key: the same key on every retry of one item, so the server
// stores the grant once however often the upload is repeated.
function newKey() {
  return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 10)
}

function loadQueue() {
  return wx.getStorageSync(QUEUE_KEY) || []
}

function saveQueue(q) {
  wx.setStorageSync(QUEUE_KEY, q.slice(-MAX_QUEUE))
}

function enqueue(item) {
  const q = loadQueue()
  q.push(Object.assign({ key: newKey() }, item))
  saveQueue(q)
}

// harvestForm takes the formId of a <form report-submit> submit event.
function harvestForm(e) {
  const formId = e && e.detail && e.detail.formId
  if (!formId || formId === MOCK_FORM_ID) return
  enqueue({ type: 'form', formId: formId, collectedAt: new Date().toISOString() })
}

// harvestPrepay takes the prepay_id of a completed payment (3 sends, 7 days).
function harvestPrepay(prepayId) {
  if (!prepayId) return
  enqueue({ type: 'prepay', prepayId: prepayId, collectedAt: new Date().toISOString() })
}

// requestSubscribe asks for subscribe grants (call it from a tap handler) and queues the
// results; only 'accept' becomes a grant on the server, but every answer is reported.
function requestSubscribe(tmplIds) {
  return new Promise(function (resolve, reject) {
    wx.requestSubscribeMessage({
      tmplIds: tmplIds.slice(0, 3), // WeChat takes at most 3 per call
      success: function (res) {
        const results = {}
        tmplIds.slice(0, 3).forEach(function (id) {
          // Newer clients may answer acceptWithAudio and similar: still an accept.
          if (res[id]) results[id] = String(res[id]).indexOf('accept') === 0 ? 'accept' : res[id]
        })
        enqueue({ type: 'subscribe', results: results })
        flush()
        resolve(res)
      },
      fail: reject,
    })
  })
}

// wrapSubmit wraps a <form report-submit> submit handler: the formId is harvested, then
// the page's own handler runs with the same event.
function wrapSubmit(handler) {
  return function (e) {
    harvestForm(e)
    return handler ? handler.call(this, e) : undefined
  }
}

// request is wx.request that first starts an upload of the queue, so harvested grants
// ride along with the app's next call to its server without delaying it.
function request(opts) {
  flush()
  return wx.request(opts)
}

// grantsOf counts the grants an item can become on the server.
function grantsOf(item) {
  if (item.type !== 'subscribe') return 1
  return Math.max(1, Object.keys(item.results || {}).filter(function (k) { return item.results[k] === 'accept' }).length)
}

// nextBatch takes queued items in order while the batch stays within both server limits.
function nextBatch(q) {
  const batch = []
  let grants = 0
  for (let i = 0; i < q.length && batch.length < MAX_BATCH; i++) {
    const n = grantsOf(q[i])
    if (batch.length > 0 && grants + n > MAX_GRANTS) break
    batch.push(q[i])
    grants += n
  }
  return batch
}

function post(path, body, token) {
  return new Promise(function (resolve, reject) {
    const header = { 'Content-Type': 'application/json' }
    if (token) header.Authorization = 'Bearer ' + token
    wx.request({
      url: config.baseURL + path, method: 'POST', data: body, header: header,
      success: function (res) { resolve(res) },
      fail: reject,
    })
  })
}

// session returns a valid session token, logging in with wx.login when needed. The
// openid never comes from the client: the server exchanges the code with WeChat.
function session() {
  const s = wx.getStorageSync(SESSION_KEY)
  if (s && s.token && Date.parse(s.expiresAt) > Date.now() + 60000) return Promise.resolve(s.token)
  return new Promise(function (resolve, reject) {
    wx.login({
      success: function (r) {
        post('/v1/session', { code: r.code, appId: config.appId }).then(function (res) {
          if (res.statusCode !== 200) return reject(new Error('session: ' + res.statusCode))
          wx.setStorageSync(SESSION_KEY, res.data)
          resolve(res.data.token)
        }, reject)
      },
      fail: reject,
    })
  })
}

// flush uploads the queue in batches (at most 50 items and 99 grants each). Items the
// server answered (200: accepted, duplicate or rejected; 422: all rejected; 400/413: a
// batch it will never take) leave the queue; on a network error, 429 or 5xx they stay and
// go again later with the same keys. A 401 drops the session and retries once.
function flush() {
  if (uploading) return uploading
  uploading = (function loop(retried) {
    const q = loadQueue()
    if (q.length === 0) return Promise.resolve()
    const batch = nextBatch(q)
    return session().then(function (token) {
      return post('/v1/grants', { grants: batch }, token)
    }).then(function (res) {
      if (res.statusCode === 401 && !retried) {
        wx.removeStorageSync(SESSION_KEY)
        return loop(true)
      }
      if ([200, 400, 413, 422].indexOf(res.statusCode) >= 0) {
        // Answered item by item (or refused as a whole): drop them either way, so a bad
        // item cannot block the queue forever.
        const sent = {}
        batch.forEach(function (it) { sent[it.key] = true })
        saveQueue(loadQueue().filter(function (it) { return !sent[it.key] }))
        return loop(false)
      }
      // 429, 5xx: keep everything for the next flush.
    })
  })(false).then(function () { uploading = null }, function () { uploading = null })
  return uploading
}

module.exports = { init, harvestForm, harvestPrepay, requestSubscribe, wrapSubmit, request, flush, nextBatch, MOCK_FORM_ID }
