import {expect} from 'chai'
import {mkdtempSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {agentsTakeProxies} from '../../src/lib/proxy.js'
import {fireHooks, HookBody, pingUrl, redactTarget} from '../../src/proof/hooks.js'
import {HookServer} from '../helpers/hook-server.js'

const body = (event: HookBody['event'], extra: Partial<HookBody> = {}): HookBody => ({
  app: 'shop',
  backup: null,
  environment: 'live',
  error: null,
  event,
  time: '2026-12-03T02:00:00.000Z',
  ...extra,
})
const quick = {attempts: 3, backoffMs: 10, timeoutMs: 2000}
const SECRET = 'c0ffee00-secret-token'

describe('notification hooks', () => {
  let server: HookServer | undefined

  afterEach(async () => {
    await server?.stop()
    server = undefined
  })

  it('a webhook gets the event as JSON; pings go to /start, the URL, and /fail', async () => {
    server = await HookServer.start()
    const settings = {ping: `${server.url}/ping/${SECRET}`, webhook: `${server.url}/hook/${SECRET}?token=x`}
    for (const event of ['start', 'success', 'failure'] as const) {
      const error = event === 'failure' ? {code: 'STORE_UNAVAILABLE', message: 'the store is gone'} : null
      const outcomes = await fireHooks(settings, body(event, {error}), quick)
      expect(outcomes.map(({kind, ok}) => ({kind, ok}))).to.deep.equal([
        {kind: 'webhook', ok: true},
        {kind: 'ping', ok: true},
      ])
    }

    const hooks = server.received.filter(({path}) => path.startsWith('/hook/'))
    expect(hooks.map(({body: text}) => (JSON.parse(text) as HookBody).event)).to.deep.equal([
      'start',
      'success',
      'failure',
    ])
    expect(JSON.parse(hooks[2].body)).to.deep.include({
      app: 'shop',
      environment: 'live',
      error: {code: 'STORE_UNAVAILABLE', message: 'the store is gone'},
    })
    const pings = server.received.filter(({path}) => path.startsWith('/ping/'))
    expect(pings.map(({method, path}) => `${method} ${path}`)).to.deep.equal([
      `POST /ping/${SECRET}/start`,
      `POST /ping/${SECRET}`,
      `POST /ping/${SECRET}/fail`,
    ])
    expect(pings[2].body).to.equal('STORE_UNAVAILABLE: the store is gone')
  })

  it('retries with backoff, and gives up after the last try without throwing', async () => {
    server = await HookServer.start((_request, index) => (index < 2 ? 503 : 200))
    const [recovered] = await fireHooks({webhook: `${server.url}/${SECRET}`}, body('success'), quick)
    expect(recovered).to.include({attempts: 3, ok: true})
    expect(server.received).to.have.length(3)

    await server.stop()
    server = await HookServer.start(() => 500)
    const [failed] = await fireHooks({webhook: `${server.url}/${SECRET}`}, body('success'), quick)
    expect(failed).to.deep.include({attempts: 3, error: 'HTTP 500', ok: false})
    expect(failed.target).to.not.include(SECRET)
  })

  it('a hook that never answers is given up after each try times out', async () => {
    server = await HookServer.start(() => 'hang')
    const [hung] = await fireHooks({ping: `${server.url}/${SECRET}`}, body('start'), {
      attempts: 2,
      backoffMs: 10,
      timeoutMs: 300,
    })
    expect(hung).to.deep.include({attempts: 2, error: 'no answer within 0.3 s', ok: false})
    expect(server.received).to.have.length(2)
  })

  it('follows redirects as fetch does: 307 and 308 with the POST and its body, 301 as a GET', async () => {
    server = await HookServer.start(({path}) => {
      if (path === '/kept') return {location: '/kept-here', status: 308}
      if (path === '/moved') return {location: `${server!.url}/moved-here`, status: 301}
      if (path === '/loop') return {location: '/loop', status: 307}
      return 200
    })
    const [kept] = await fireHooks({webhook: `${server.url}/kept`}, body('success'), quick)
    const [moved] = await fireHooks({ping: `${server.url}/moved`}, body('success'), quick)
    expect([kept.ok, moved.ok]).to.deep.equal([true, true])
    const seen = server.received.map(({body: text, method, path}) => ({empty: text === '', method, path}))
    expect(seen).to.deep.equal([
      {empty: false, method: 'POST', path: '/kept'},
      {empty: false, method: 'POST', path: '/kept-here'},
      {empty: false, method: 'POST', path: '/moved'},
      {empty: true, method: 'GET', path: '/moved-here'},
    ])
    expect(server.received[1].body).to.equal(server.received[0].body)
    const [loop] = await fireHooks({webhook: `${server.url}/loop`}, body('success'), {...quick, attempts: 1})
    expect(loop).to.deep.include({error: 'HTTP 307', ok: false})
  })

  it(`${agentsTakeProxies() ? 'goes through the proxy of HTTP_PROXY' : 'goes direct (this Node.js line takes no proxy)'}, NO_PROXY excepted`, async () => {
    server = await HookServer.start()
    // A proxy gets the whole URL in its request line; this one answers for the hook.
    const proxy = await HookServer.start()
    const saved = {HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY}
    process.env.HTTP_PROXY = proxy.url
    try {
      const target = `${server.url}/hook/${SECRET}`
      expect((await fireHooks({webhook: target}, body('success'), quick))[0].ok).to.equal(true)
      if (agentsTakeProxies()) {
        expect(proxy.received.map(({path}) => path)).to.deep.equal([target])
        expect(server.received).to.deep.equal([])
      } else {
        expect(proxy.received).to.deep.equal([])
        expect(server.received.map(({path}) => path)).to.deep.equal([`/hook/${SECRET}`])
      }

      process.env.NO_PROXY = '127.0.0.1'
      const through = proxy.received.length
      expect((await fireHooks({webhook: target}, body('success'), quick))[0].ok).to.equal(true)
      expect(proxy.received.length).to.equal(through)
      expect(server.received.map(({path}) => path).at(-1)).to.equal(`/hook/${SECRET}`)
    } finally {
      for (const [name, value] of Object.entries(saved))
        if (value === undefined) delete process.env[name]
        else process.env[name] = value
      await proxy.stop()
    }
  })

  it('a refused connection is an outcome, not an exception; events outside `events` fire nothing', async () => {
    const closed = await HookServer.closedUrl()
    const [refused] = await fireHooks({webhook: `${closed}/${SECRET}`}, body('failure'), {
      ...quick,
      attempts: 1,
    })
    expect(refused).to.deep.include({ok: false})
    expect(refused.error).to.match(/ECONNREFUSED/)
    expect(refused.error).to.not.include(SECRET)
    expect(await fireHooks({events: ['failure'], webhook: `${closed}/`}, body('success'), quick)).to.deep.equal([])
  })

  it('a command gets the event in its environment and the body on stdin', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'divio-hook-'))
    const out = join(folder, 'out')
    const [ran] = await fireHooks(
      {command: `echo "$DIVIO_BACKUP_EVENT $DIVIO_BACKUP_APP/$DIVIO_BACKUP_ENV" > ${out}; cat >> ${out}`},
      body('success'),
      quick,
    )
    expect(ran).to.deep.include({kind: 'command', ok: true})
    const [first, json] = readFileSync(out, 'utf8').split('\n')
    expect(first).to.equal('success shop/live')
    expect(JSON.parse(json)).to.deep.include({event: 'success'})
    const [failing] = await fireHooks({command: 'exit 3'}, body('success'), {...quick, attempts: 1})
    expect(failing).to.deep.include({ok: false})
  })

  it('URLs are shown without path, query or password; ping URLs keep their query last', () => {
    expect(redactTarget('webhook', `https://user:pw@hooks.example.com/T0/${SECRET}?k=v`)).to.equal(
      'https://hooks.example.com/***',
    )
    expect(redactTarget('command', `curl -fsS https://x/${SECRET}`)).to.equal('curl …')
    expect(pingUrl('https://hc-ping.com/abc?create=1', 'start')).to.equal('https://hc-ping.com/abc/start?create=1')
    expect(pingUrl('https://hc-ping.com/abc/', 'failure')).to.equal('https://hc-ping.com/abc/fail')
    expect(pingUrl('https://hc-ping.com/abc', 'success')).to.equal('https://hc-ping.com/abc')
  })
})
