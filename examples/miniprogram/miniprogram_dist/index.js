// minipush client for a WeChat mini-program: harvest send grants where users tap, keep
// them in a persistent queue, and upload them in batches the next time the app talks to
// the server. Plain ES2017 JavaScript with no dependencies and no build step, so the
// DevTools' "build npm" copies this folder (the package's `miniprogram` field) as it is.
// See ../README.md; the types are in index.d.ts.
//
//   const minipush = require('minipush-miniprogram')
//   minipush.init({ baseURL: 'https://api.example.com', appId: 'wx...' })
//   onSubmit: minipush.wrapSubmit(function (e) { ... })   // <form report-submit>
//   remindMe() { minipush.requestSubscribe(['TEMPLATE_ID']) } // from a tap
//   minipush.harvestPrepay(prepayId)                        // after a payment
//   minipush.request({ url, data, success })                // wx.request that flushes first
'use strict'

var QUEUE_KEY = 'minipush.queue'
var SESSION_KEY = 'minipush.session'
var MAX_BATCH = 50 // the server refuses more than 50 items per upload (413)
var MAX_GRANTS = 99 // ... and more than 99 grants
var MAX_QUEUE = 500 // grants are one-time and expire; an endless backlog helps nobody
var FORM_TTL_MS = 7 * 24 * 3600 * 1000 // a formId or prepay_id is dead after 7 days
var MOCK_FORM_ID = 'the formId is a mock one' // DevTools' formId: never usable
// Answers that settle a batch for good: 200 item by item, 422 all rejected, 400/413 a
// batch the server will never take. Dropping them keeps one bad item from blocking the
// queue forever. Anything else (no answer, 401, 429, 5xx) keeps the batch for later.
var SETTLED = [200, 400, 413, 422]

// newKey makes an item's idempotency key, once, when the item is queued: every retry of
// that item carries the same key, so the server stores the grant once however often the
// upload is repeated (a subscribe grant's id is derived from template + key).
function newKey() {
  return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 10)
}

// grantsOf counts the grants an item can become on the server.
function grantsOf(item) {
  if (item.type !== 'subscribe') return 1
  var results = item.results || {}
  var n = Object.keys(results).filter(function (k) { return results[k] === 'accept' }).length
  return Math.max(1, n)
}

// nextBatch takes queued items in order while the batch stays within both server limits.
function nextBatch(q) {
  var batch = []
  var grants = 0
  for (var i = 0; i < q.length && batch.length < MAX_BATCH; i++) {
    var n = grantsOf(q[i])
    if (batch.length > 0 && grants + n > MAX_GRANTS) break
    batch.push(q[i])
    grants += n
  }
  return batch
}

// isAccept: newer clients answer acceptWithAudio / acceptWithAlert for ordinary
// subscribe templates; both are accepts, and the server knows only 'accept'.
function isAccept(v) {
  return typeof v === 'string' && v.indexOf('accept') === 0
}

// create returns a client. opts: baseURL (the API), appId, and optionally wx (the
// mini-program's wx object; the global one by default) and storagePrefix (to keep two
// clients' queues apart).
function create(opts) {
  var config = Object.assign({ baseURL: '', appId: '', storagePrefix: '' }, opts)
  var uploading = null
  var retryAt = 0 // a 429's Retry-After: no upload before then
  var online = true
  var watching = false

  function api() {
    var w = config.wx || (typeof wx !== 'undefined' ? wx : null) // eslint-disable-line no-undef
    if (!w) throw new Error('minipush: no wx object (pass one to create or init)')
    return w
  }

  // Network status: while offline a flush does nothing, and the queue is flushed as soon
  // as the network comes back.
  function watchNetwork() {
    if (watching) return
    watching = true
    var w = api()
    if (w.onNetworkStatusChange) {
      w.onNetworkStatusChange(function (res) {
        online = !!res.isConnected
        if (online) flush()
      })
    }
    if (w.getNetworkType) {
      w.getNetworkType({ success: function (res) { online = res.networkType !== 'none' } })
    }
  }

  function loadQueue() {
    return api().getStorageSync(config.storagePrefix + QUEUE_KEY) || []
  }

  function saveQueue(q) {
    api().setStorageSync(config.storagePrefix + QUEUE_KEY, q.slice(-MAX_QUEUE))
  }

  function enqueue(item) {
    var q = loadQueue()
    q.push(Object.assign({ key: newKey() }, item))
    saveQueue(q)
  }

  // harvestForm takes the formId of a <form report-submit> submit event. DevTools'
  // mock formId is dropped here: the server would refuse it anyway.
  function harvestForm(e) {
    var formId = e && e.detail && e.detail.formId
    if (!formId || formId === MOCK_FORM_ID) return false
    enqueue({ type: 'form', formId: formId, collectedAt: new Date().toISOString() })
    return true
  }

  // harvestPrepay takes the prepay_id of a completed payment (3 sends within 7 days).
  function harvestPrepay(prepayId) {
    if (!prepayId) return false
    enqueue({ type: 'prepay', prepayId: prepayId, collectedAt: new Date().toISOString() })
    return true
  }

  // requestSubscribe asks for subscribe grants (call it from a tap handler: WeChat shows
  // the prompt only then) and queues the answer as one item; only accepts become grants
  // on the server, but every answer is reported. At most 3 templates per call.
  function requestSubscribe(tmplIds) {
    var ids = (tmplIds || []).slice(0, 3)
    return new Promise(function (resolve, reject) {
      api().requestSubscribeMessage({
        tmplIds: ids,
        success: function (res) {
          var results = {}
          ids.forEach(function (id) {
            if (res[id]) results[id] = isAccept(res[id]) ? 'accept' : res[id]
          })
          if (Object.keys(results).length > 0) {
            enqueue({ type: 'subscribe', results: results })
            flush()
          }
          resolve(res)
        },
        fail: reject,
      })
    })
  }

  // subscriptionSettings reads the user's subscribe settings: mainSwitch false means
  // every prompt fails (errCode 20004), so hide the button; always lists the templates
  // whose choice the user asked to keep ('accept' or 'reject'): for an accepted one no
  // prompt shows, but each requestSubscribe from a tap still adds one grant.
  function subscriptionSettings() {
    return new Promise(function (resolve, reject) {
      api().getSetting({
        withSubscriptions: true,
        success: function (res) {
          var s = res.subscriptionsSetting || {}
          var always = {}
          Object.keys(s.itemSettings || {}).forEach(function (id) {
            always[id] = isAccept(s.itemSettings[id]) ? 'accept' : s.itemSettings[id]
          })
          resolve({ mainSwitch: s.mainSwitch !== false, always: always })
        },
        fail: reject,
      })
    })
  }

  // wrapSubmit wraps a <form report-submit> submit handler: the formId is harvested,
  // then the page's own handler runs with the same event.
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
    return api().request(opts)
  }

  function post(path, body, token) {
    return new Promise(function (resolve, reject) {
      var header = { 'Content-Type': 'application/json' }
      if (token) header.Authorization = 'Bearer ' + token
      api().request({
        url: config.baseURL + path, method: 'POST', data: body, header: header,
        success: resolve,
        fail: function (err) { reject(new Error('minipush: POST ' + path + ': ' + ((err && err.errMsg) || 'request failed'))) },
      })
    })
  }

  // session returns a valid session token, logging in with wx.login when it has none
  // (or one that expires within a minute). The openid never comes from the client: the
  // server exchanges the code with WeChat.
  function session() {
    var s = api().getStorageSync(config.storagePrefix + SESSION_KEY)
    if (s && s.token && Date.parse(s.expiresAt) > Date.now() + 60000) return Promise.resolve(s.token)
    return new Promise(function (resolve, reject) {
      api().login({
        success: function (r) {
          post('/v1/session', { code: r.code, appId: config.appId }).then(function (res) {
            if (res.statusCode !== 200) return reject(new Error('minipush: session: HTTP ' + res.statusCode))
            api().setStorageSync(config.storagePrefix + SESSION_KEY, res.data)
            resolve(res.data.token)
          }, reject)
        },
        fail: function (err) { reject(new Error('minipush: wx.login: ' + ((err && err.errMsg) || 'failed'))) },
      })
    })
  }

  function isOnline() {
    return new Promise(function (resolve) {
      var w = api()
      if (!w.getNetworkType) return resolve(online)
      w.getNetworkType({
        success: function (res) { online = res.networkType !== 'none'; resolve(online) },
        fail: function () { resolve(online) },
      })
    })
  }

  // flush uploads the queue in batches of at most 50 items and 99 grants. Settled
  // batches (see SETTLED) leave the queue; on no answer, 429 or 5xx the batch stays and
  // goes again on a later flush with the same keys; a 401 drops the session and retries
  // once. It resolves with what happened: {batches, accepted, duplicate, rejected,
  // ignored, remaining, error?}; it never rejects. Concurrent calls share one upload.
  function flush() {
    watchNetwork()
    if (uploading) return uploading
    var report = { batches: 0, accepted: 0, duplicate: 0, rejected: 0, ignored: 0, remaining: 0 }
    function loop(retried) {
      var now = Date.now()
      // A formId or prepay_id older than 7 days would only come back 'expired'.
      var q = loadQueue().filter(function (it) {
        return it.type === 'subscribe' || !it.collectedAt || now - Date.parse(it.collectedAt) < FORM_TTL_MS
      })
      saveQueue(q)
      if (q.length === 0 || now < retryAt) return Promise.resolve()
      var batch = nextBatch(q)
      return session().then(function (token) {
        return post('/v1/grants', { grants: batch }, token)
      }).then(function (res) {
        if (res.statusCode === 401 && !retried) {
          api().removeStorageSync(config.storagePrefix + SESSION_KEY)
          return loop(true)
        }
        if (res.statusCode === 429) {
          var after = parseInt((res.header && (res.header['Retry-After'] || res.header['retry-after'])) || '1', 10)
          retryAt = Date.now() + (isNaN(after) ? 1 : after) * 1000
        }
        if (SETTLED.indexOf(res.statusCode) < 0) {
          report.error = 'HTTP ' + res.statusCode
          return undefined
        }
        report.batches++
        var d = res.data || {}
        report.accepted += d.accepted || 0
        report.duplicate += d.duplicate || 0
        report.rejected += d.rejected || (res.statusCode === 200 ? 0 : batch.length)
        report.ignored += d.ignored || 0
        var sent = {}
        batch.forEach(function (it) { sent[it.key] = true })
        saveQueue(loadQueue().filter(function (it) { return !sent[it.key] }))
        return loop(false)
      })
    }
    uploading = isOnline().then(function (up) {
      if (!up) {
        report.error = 'offline'
        return undefined
      }
      return loop(false)
    }).catch(function (err) {
      report.error = err && err.message ? err.message : String(err)
    }).then(function () {
      uploading = null
      report.remaining = loadQueue().length
      return report
    })
    return uploading
  }

  return {
    harvestForm: harvestForm,
    harvestPrepay: harvestPrepay,
    requestSubscribe: requestSubscribe,
    subscriptionSettings: subscriptionSettings,
    wrapSubmit: wrapSubmit,
    request: request,
    flush: flush,
    queue: loadQueue,
  }
}

// The module-level functions use one default client, configured by init.
var defaultClient = null

function init(opts) {
  defaultClient = create(opts)
  return defaultClient
}

function client() {
  if (!defaultClient) throw new Error('minipush: call init({ baseURL, appId }) first')
  return defaultClient
}

module.exports = {
  create: create,
  init: init,
  harvestForm: function (e) { return client().harvestForm(e) },
  harvestPrepay: function (id) { return client().harvestPrepay(id) },
  requestSubscribe: function (ids) { return client().requestSubscribe(ids) },
  subscriptionSettings: function () { return client().subscriptionSettings() },
  wrapSubmit: function (h) { return function (e) { client().harvestForm(e); return h ? h.call(this, e) : undefined } },
  request: function (o) { return client().request(o) },
  flush: function () { return client().flush() },
  nextBatch: nextBatch,
  MOCK_FORM_ID: MOCK_FORM_ID,
  MAX_BATCH: MAX_BATCH,
  MAX_GRANTS: MAX_GRANTS,
}
