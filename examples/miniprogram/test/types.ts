// Compiled by `tsc --noEmit` only (make test, through internal/dev/clienttest): how a
// TypeScript mini-program uses the package, checked against miniprogram-api-typings.
import minipush = require('../miniprogram_dist/index')

minipush.init({ baseURL: 'https://api.example.com', appId: 'wx0000000000demo' })

App({
  onShow() {
    minipush.flush().then((r) => {
      const left: number = r.remaining
      if (r.error) console.log('minipush: kept', left, 'for later:', r.error)
    })
  },
})

Page({
  onSubmit: minipush.wrapSubmit(function (e: WechatMiniprogram.FormSubmit) {
    console.log(e.detail.value)
  }),
  remindMe() {
    minipush.requestSubscribe(['DEMO_CHECKIN_REMINDER']).then((res) => console.log(res.errMsg))
  },
  paid(prepayId: string) {
    const queued: boolean = minipush.harvestPrepay(prepayId)
    return queued
  },
  load() {
    minipush.request({ url: 'https://api.example.com/v1/things', success: (res) => console.log(res.statusCode) })
  },
})

// A second client with its own wx (as the tests pass a shim) and storage keys.
const other = minipush.create({ baseURL: 'https://other.example.com', appId: '', wx, storagePrefix: 'other.' })
other.subscriptionSettings().then((s) => (s.mainSwitch ? other.requestSubscribe(Object.keys(s.always)) : undefined))
const batch: minipush.Item[] = minipush.nextBatch(other.queue())
console.log(batch.length <= minipush.MAX_BATCH)
