// A `wx` for Node: what the client calls of the mini-program API, backed by the running
// local system instead of a phone. wx.request does real HTTP (fetch) to the local API;
// wx.login, wx.requestSubscribeMessage and the form/prepay ids come from the WeChat
// sandbox's control API, so the server's jscode2session and later sends see the same
// user and grants a real client would produce. Two knobs stand in for a phone's network:
// setOnline(false) is airplane mode (requests fail, onNetworkStatusChange fires), and
// dropAnswer(pathPart) loses the next answer to that path after the server handled it.
'use strict'

function createWx(opts) {
  var sandbox = opts.sandbox
  var appId = opts.appId
  var storage = opts.storage || new Map() // shared by two shims = the same phone's storage
  var state = {
    openid: opts.openid || '',
    online: true,
    drop: [], // path parts whose next answer is lost
    listeners: [],
    requests: [], // every wx.request: {method, url, body, statusCode, data, dropped, failed}
    logins: 0,
    settings: opts.settings || { mainSwitch: true, itemSettings: {} },
  }

  async function control(path, body) {
    var res = await fetch(sandbox + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
    var data = await res.json()
    if (!res.ok) throw new Error('sandbox ' + path + ': ' + res.status + ' ' + JSON.stringify(data))
    return data
  }

  // ensureUser gives the phone's user an openid on WeChat's side (the sandbox): a user
  // exists there before they ever log in to this app.
  async function ensureUser() {
    if (!state.openid) state.openid = (await control('/_sandbox/users', { appid: appId })).openid
    return state.openid
  }

  function fail(cb, errMsg) {
    setImmediate(function () { cb && cb({ errMsg: errMsg }) })
  }

  var wx = {
    login: function (o) {
      state.logins++
      ensureUser()
        .then(function (openid) { return control('/_sandbox/codes', { appid: appId, openid: openid }) })
        .then(function (r) { state.openid = r.openid; o.success && o.success({ code: r.code, errMsg: 'login:ok' }) })
        .catch(function (e) { o.fail && o.fail({ errMsg: 'login:fail ' + e.message }) })
    },

    request: function (o) {
      var rec = { method: o.method || 'GET', url: o.url, body: o.data }
      state.requests.push(rec)
      if (!state.online) {
        rec.failed = true
        return fail(o.fail, 'request:fail net::ERR_INTERNET_DISCONNECTED')
      }
      var headers = Object.assign({}, o.header)
      var body
      if (o.data !== undefined && rec.method !== 'GET') body = typeof o.data === 'string' ? o.data : JSON.stringify(o.data)
      fetch(o.url, { method: rec.method, headers: headers, body: body }).then(async function (res) {
        var text = await res.text()
        var data = text
        try { data = JSON.parse(text) } catch (e) { /* not JSON: keep the text, as wx.request does */ }
        rec.statusCode = res.status
        rec.data = data
        var i = state.drop.findIndex(function (p) { return o.url.indexOf(p) >= 0 })
        if (i >= 0) {
          // The server handled the request; its answer never reaches the phone.
          state.drop.splice(i, 1)
          rec.dropped = true
          return fail(o.fail, 'request:fail timeout')
        }
        var header = {}
        res.headers.forEach(function (v, k) { header[k.replace(/(^|-)([a-z])/g, function (m) { return m.toUpperCase() })] = v })
        o.success && o.success({ statusCode: res.status, data: data, header: header, errMsg: 'request:ok' })
      }, function (e) {
        rec.failed = true
        fail(o.fail, 'request:fail ' + e.message)
      })
    },

    getStorageSync: function (k) {
      return storage.has(k) ? JSON.parse(storage.get(k)) : ''
    },
    setStorageSync: function (k, v) { storage.set(k, JSON.stringify(v)) },
    removeStorageSync: function (k) { storage.delete(k) },

    getSetting: function (o) {
      var res = { authSetting: {}, errMsg: 'getSetting:ok' }
      if (o.withSubscriptions) res.subscriptionsSetting = JSON.parse(JSON.stringify(state.settings))
      setImmediate(function () { o.success && o.success(res) })
    },

    // The user answers answers[id] (default 'accept') for each template; WeChat records
    // each accept on its side (the sandbox), which the server's later send spends.
    requestSubscribeMessage: function (o) {
      var answers = state.nextAnswers || {}
      state.nextAnswers = null
      if (state.settings.mainSwitch === false) {
        return setImmediate(function () { o.fail && o.fail({ errMsg: 'requestSubscribeMessage:fail main switch is off', errCode: 20004 }) })
      }
      var res = { errMsg: 'requestSubscribeMessage:ok' }
      ensureUser().then(function (openid) {
        return Promise.all(o.tmplIds.map(function (id) {
          res[id] = answers[id] || 'accept'
          if (res[id].indexOf('accept') === 0) return control('/_sandbox/grants/subscribe', { appid: appId, openid: openid, template_id: id })
        }))
      }).then(function () { o.success && o.success(res) }, function (e) { o.fail && o.fail({ errMsg: 'requestSubscribeMessage:fail ' + e.message }) })
    },

    getNetworkType: function (o) {
      setImmediate(function () { o.success && o.success({ networkType: state.online ? 'wifi' : 'none', errMsg: 'getNetworkType:ok' }) })
    },
    onNetworkStatusChange: function (cb) { state.listeners.push(cb) },
  }

  return {
    wx: wx,
    state: state,
    storage: storage,
    // setOnline flips the network and tells the listeners, as the phone does.
    setOnline: function (up) {
      state.online = up
      state.listeners.forEach(function (cb) { cb({ isConnected: up, networkType: up ? 'wifi' : 'none' }) })
    },
    dropAnswer: function (pathPart) { state.drop.push(pathPart) },
    // answerNext sets the user's answers to the next subscribe prompt.
    answerNext: function (answers) { state.nextAnswers = answers },
    // newFormId is the formId of a <form report-submit> submit by this user (the sandbox
    // mints it for the openid, as WeChat does); kind 'prepay' gives a prepay_id.
    newFormId: async function (kind) {
      var r = await control('/_sandbox/grants/form', { appid: appId, openid: await ensureUser(), kind: kind || 'form' })
      return r.form_id
    },
    grantPosts: function () { return state.requests.filter(function (r) { return r.url.indexOf('/v1/grants') >= 0 }) },
  }
}

module.exports = { createWx: createWx }
