// The running local system the tests talk to. make test's Go test
// (internal/dev/clienttest) starts it and passes its endpoints in MINIPUSH_API,
// MINIPUSH_WECHAT, MINIPUSH_APP_ID and MINIPUSH_OPERATOR_TOKEN; run alone
// (`npm test` here), the tests start it the way make run does, with
// `go run ./cmd/minipush-local` on fresh data, and read its ready line.
'use strict'

const { spawn } = require('node:child_process')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

let started = null

async function system() {
  if (process.env.MINIPUSH_API) {
    return {
      api: process.env.MINIPUSH_API,
      wechat: process.env.MINIPUSH_WECHAT,
      appId: process.env.MINIPUSH_APP_ID,
      operatorToken: process.env.MINIPUSH_OPERATOR_TOKEN,
      template: process.env.MINIPUSH_TEMPLATE || 'DEMO_CHECKIN_REMINDER',
    }
  }
  if (!started) started = start()
  return started
}

function start() {
  const root = path.resolve(__dirname, '..', '..', '..')
  const logFile = path.join(os.tmpdir(), 'minipush-client-test.jsonl')
  const child = spawn('go', ['run', './cmd/minipush-local', '-data', '', '-addr', '127.0.0.1:0', '-summary', '0', '-log-file', logFile],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  // go run leaves its child running when it is killed: end the whole process group.
  const kill = () => { try { process.kill(-child.pid, 'SIGTERM') } catch (e) { /* gone */ } }
  child.kill = kill
  process.on('exit', kill)
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout })
    lines.once('line', (line) => {
      try {
        const r = JSON.parse(line)
        resolve({ api: r.api, wechat: r.wechat_sandbox, appId: r.app_id, operatorToken: r.operator_token, template: 'DEMO_CHECKIN_REMINDER', child })
      } catch (e) {
        reject(new Error('minipush-local said: ' + line))
      }
    })
    child.once('exit', (code) => reject(new Error('minipush-local exited with ' + code)))
  })
}

// stop ends a system this process started (no-op for one passed in by the environment).
async function stop() {
  if (!started) return
  const s = await started.catch(() => null)
  if (s && s.child) s.child.kill()
}

// inventory is the app's live grants by kind, from the operator API.
async function inventory(sys) {
  const res = await fetch(sys.api + '/v1/admin/inventory?appId=' + sys.appId, { headers: { Authorization: 'Bearer ' + sys.operatorToken } })
  if (!res.ok) throw new Error('inventory: ' + res.status + ' ' + (await res.text()))
  const inv = await res.json()
  return Object.assign({ subscribe: 0, form: 0, prepay: 0 }, inv.liveByKind)
}

module.exports = { system, stop, inventory }
