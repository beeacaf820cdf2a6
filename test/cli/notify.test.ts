import {expect} from 'chai'

import {HookServer} from '../helpers/hook-server.js'
import {cli, cliInBackground, makeProject, writeEnvironments} from '../helpers/project.js'

const SECRET = 'c0ffee00-secret-token'
const at = {DIVIO_BACKUP_NOW: '2026-12-01T03:00:00Z'}

interface Notification {
  event: string
  kind: string
  ok: boolean
  target: string
}

describe('notifications from schedule run and create --notify', () => {
  let server: HookServer | undefined

  afterEach(async () => {
    await server?.stop()
    server = undefined
  })

  it('schedule run tells the webhook and the ping URL of the start and the backup it took', async () => {
    server = await HookServer.start()
    const project = makeProject()
    writeEnvironments(project, {
      live: {
        notify: {ping: `${server.url}/ping/${SECRET}`, webhook: `${server.url}/hook/${SECRET}`},
        schedule: {at: '02:00', timezone: 'UTC'},
      },
    })
    const ran = await cliInBackground(project, ['schedule', 'run', '--json'], at)
    expect(ran.status, ran.stderr).to.equal(0)
    const result = ran.json() as {notifications: Notification[]; taken: {id: string}}
    expect(result.notifications.map(({event, kind, ok}) => `${event} ${kind} ${ok}`)).to.deep.equal([
      'start webhook true',
      'start ping true',
      'success webhook true',
      'success ping true',
    ])
    expect(JSON.stringify(result.notifications)).to.not.include(SECRET)
    const hooks = server.received.filter(({path}) => path.startsWith('/hook/')).map(({body}) => JSON.parse(body))
    expect(hooks.map(({event}) => event)).to.deep.equal(['start', 'success'])
    expect(hooks[1]).to.deep.include({app: 'shop', environment: 'live', error: null})
    expect(hooks[1].backup.id).to.equal(result.taken.id)
    expect(server.received.filter(({path}) => path.startsWith('/ping/')).map(({path}) => path)).to.deep.equal([
      `/ping/${SECRET}/start`,
      `/ping/${SECRET}`,
    ])
  })

  it('a failed run pings /fail with the error; the failure still exits non-zero', async () => {
    server = await HookServer.start()
    const project = makeProject()
    writeEnvironments(project, {
      live: {
        notify: {ping: `${server.url}/${SECRET}`},
        schedule: {at: '02:00', timezone: 'UTC'},
        store: '/nonexistent/backup-disk',
      },
    })
    const ran = await cliInBackground(project, ['schedule', 'run'], at)
    expect(ran.status).to.equal(7)
    expect(server.received.map(({path}) => path)).to.deep.equal([`/${SECRET}/start`, `/${SECRET}/fail`])
    expect(server.received[1].body).to.match(/^STORE_NOT_FOUND: /)
  })

  it('a hook that fails or hangs never fails the backup: a warning with the URL redacted, and --json says so', async () => {
    server = await HookServer.start(() => 'hang')
    const closed = await HookServer.closedUrl()
    const project = makeProject()
    writeEnvironments(project, {
      local: {notify: {events: ['success'], ping: `${server.url}/${SECRET}`, webhook: `${closed}/${SECRET}`}},
    })
    const created = await cliInBackground(project, ['create', '--notify', '--json'], {
      DIVIO_BACKUP_HOOK_TIMEOUT_SECONDS: '0.3',
    })
    expect(created.status, created.stderr).to.equal(0)
    const {notifications} = created.json() as {notifications: Notification[]}
    expect(notifications.map(({kind, ok}) => `${kind} ${ok}`)).to.deep.equal(['webhook false', 'ping false'])
    expect(created.stderr).to.match(
      /^warning: the success ping hook \(http:\/\/127\.0\.0\.1:\d+\/\*\*\*\) failed after 3 tries: no answer within 0\.3 s\. The backup is not affected\.$/m,
    )
    expect(created.stderr).to.include('warning: the success webhook hook')
    expect(created.stderr + created.stdout).to.not.include(SECRET)
    expect(server.received).to.have.length(3)

    // Without --notify, create tells nobody.
    const quiet = await cliInBackground(project, ['create', '--json'])
    expect(quiet.status).to.equal(0)
    expect(quiet.json()).to.not.have.property('notifications')
    expect(server.received).to.have.length(3)
  })

  it('a hook URL that is not http(s) is a config error that does not repeat it', async () => {
    const project = makeProject()
    writeEnvironments(project, {local: {notify: {webhook: `ftp://example.com/${SECRET}`}}})
    const refused = await cli(project, ['list'])
    expect(refused.status).to.equal(2)
    expect(refused.stderr).to.match(/environments\.local\.notify\.webhook: use an http:\/\/ or https:\/\/ URL/)
    expect(refused.stderr).to.not.include(SECRET)
  })
})
