// Types of minipush-miniprogram (index.js beside this file), written against
// miniprogram-api-typings: the wx object, events and request options are WeChat's own.
/// <reference types="miniprogram-api-typings" />

/** The wx calls the client makes; the real `wx` satisfies it, and tests pass a shim. */
export type WxLike = Pick<
  WechatMiniprogram.Wx,
  'login' | 'request' | 'getStorageSync' | 'setStorageSync' | 'removeStorageSync' | 'requestSubscribeMessage' | 'getSetting'
> &
  Partial<Pick<WechatMiniprogram.Wx, 'getNetworkType' | 'onNetworkStatusChange'>>

export interface Options {
  /** The API's base URL, e.g. https://api.example.com (no trailing slash). */
  baseURL: string
  /** The mini-program's appid; may be empty when the deployment serves one app. */
  appId: string
  /** The wx object; the global wx by default. */
  wx?: WxLike
  /** Prefixes the storage keys, to keep two clients' queues apart. */
  storagePrefix?: string
}

/** A queued upload item, as POST /v1/grants takes it. */
export type Item =
  | { type: 'form'; formId: string; collectedAt: string; key: string }
  | { type: 'prepay'; prepayId: string; collectedAt: string; key: string }
  | { type: 'subscribe'; results: Record<string, 'accept' | 'reject' | 'ban' | 'filter' | string>; key: string }

/** What one flush did. It never rejects: a failure is in error and the items stay queued. */
export interface FlushReport {
  /** Uploads the server settled (answered 200, 400, 413 or 422). */
  batches: number
  accepted: number
  duplicate: number
  rejected: number
  ignored: number
  /** Items still queued afterwards. */
  remaining: number
  /** Why the flush stopped early: 'offline', 'HTTP 429', a request failure… */
  error?: string
}

export interface SubscriptionSettings {
  /** false: the user turned subscribe messages off; every prompt fails (errCode 20004). */
  mainSwitch: boolean
  /** Templates whose choice the user asked WeChat to keep, accept variants folded to 'accept'. */
  always: Record<string, 'accept' | 'reject' | 'ban' | string>
}

export interface Client {
  /** Queues the formId of a <form report-submit> submit; false when there is none or it is DevTools' mock. */
  harvestForm(e: WechatMiniprogram.FormSubmit | { detail?: { formId?: unknown } }): boolean
  /** Queues the prepay_id of a completed payment; false when empty. */
  harvestPrepay(prepayId: string): boolean
  /** Shows the subscribe prompt (call it from a tap; at most 3 templates) and queues the answer. */
  requestSubscribe(tmplIds: string[]): Promise<WechatMiniprogram.RequestSubscribeMessageSuccessCallbackResult>
  subscriptionSettings(): Promise<SubscriptionSettings>
  /** Wraps a submit handler so the formId is harvested first. */
  wrapSubmit<E extends WechatMiniprogram.FormSubmit, R>(handler?: (this: any, e: E) => R): (this: any, e: E) => R | undefined
  /** wx.request that starts a flush first. */
  request<T extends string | WechatMiniprogram.IAnyObject | ArrayBuffer = string | WechatMiniprogram.IAnyObject | ArrayBuffer>(
    opts: WechatMiniprogram.RequestOption<T>
  ): WechatMiniprogram.RequestTask
  /** Uploads the queue in batches of at most 50 items and 99 grants. */
  flush(): Promise<FlushReport>
  /** The queued items, oldest first. */
  queue(): Item[]
}

/** A client of its own (tests, or two APIs in one app). */
export function create(opts: Options): Client
/** Configures the default client the functions below use. */
export function init(opts: Options): Client
export const harvestForm: Client['harvestForm']
export const harvestPrepay: Client['harvestPrepay']
export const requestSubscribe: Client['requestSubscribe']
export const subscriptionSettings: Client['subscriptionSettings']
export const wrapSubmit: Client['wrapSubmit']
export const request: Client['request']
export const flush: Client['flush']
/** The next upload's items: in order, at most 50 items and 99 grants. */
export function nextBatch(q: Item[]): Item[]
/** DevTools' formId, "the formId is a mock one": never usable, never queued. */
export const MOCK_FORM_ID: 'the formId is a mock one'
export const MAX_BATCH: 50
export const MAX_GRANTS: 99
