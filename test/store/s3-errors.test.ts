import {expect} from 'chai'
import nock from 'nock'

import {parseS3Location} from '../../src/config/s3-location.js'
import {BackupError} from '../../src/errors.js'
import {S3Store} from '../../src/store/s3.js'

const ENDPOINT = 'http://s3.service.test'

function errorXml(code: string, extra = '', message = `${code} message`): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message>${extra}<RequestId>r</RequestId></Error>`
}

async function failureOf(operation: (store: S3Store) => Promise<unknown>): Promise<BackupError> {
  const url = new URL(
    `s3://KEY:wJalr-s3cr3t-Value@shop-backups/live?endpoint=${encodeURIComponent(ENDPOINT)}&region=eu-central-1`,
  )
  const store = new S3Store(parseS3Location(url, 'store'), 's3://shop-backups/live')
  const error = await operation(store).then(
    () => {},
    (error_: unknown) => error_,
  )
  expect(error, 'the operation must fail').to.be.instanceOf(BackupError)
  return error as BackupError
}

async function listAll(store: S3Store): Promise<string[]> {
  const keys: string[] = []
  for await (const object of store.list('shop/')) keys.push(object.key)
  return keys
}

/**
 * How the S3 store maps the service's real error responses (recorded shapes, replayed by nock): each
 * gives a message that says what is wrong and what to do, the documented exit code, and no secret.
 */
describe('S3 service errors, as S3 sends them (nock)', function () {
  before(() => {
    nock.disableNetConnect()
  })

  afterEach(() => {
    nock.cleanAll()
  })

  after(() => {
    nock.enableNetConnect()
  })

  const cases: Array<{
    code: number
    headers?: Record<string, string>
    message: RegExp
    name: string
    reply: [number, string]
    times?: number
  }> = [
    {
      code: 7,
      message: /S3 denied access to s3:\/\/shop-backups\/live \(AccessDenied\)\.$/,
      name: 'AccessDenied',
      reply: [403, errorXml('AccessDenied', '', 'Access Denied')],
      // Listing asks for open uploads first, where some services deny access; the listing itself then fails.
      times: 2,
    },
    {
      code: 7,
      // S3's own words say which principal lacked which action, and why: they are kept.
      message:
        /S3 denied access to s3:\/\/shop-backups\/live \(AccessDenied\): User: arn:aws:iam::111122223333:user\/backup is not authorized to perform: s3:ListBucket on resource: "arn:aws:s3:::shop-backups" because no identity-based policy allows the s3:ListBucket action\.$/,
      name: 'AccessDenied, with the principal and the action',
      reply: [
        403,
        errorXml(
          'AccessDenied',
          '',
          'User: arn:aws:iam::111122223333:user/backup is not authorized to perform: s3:ListBucket on resource: &quot;arn:aws:s3:::shop-backups&quot; because no identity-based policy allows the s3:ListBucket action',
        ),
      ],
      times: 2,
    },
    {
      code: 7,
      message: /S3 refused the credentials for s3:\/\/shop-backups\/live \(InvalidAccessKeyId\)/,
      name: 'InvalidAccessKeyId',
      reply: [
        403,
        errorXml('InvalidAccessKeyId', '', 'The AWS Access Key Id you provided does not exist in our records.'),
      ],
    },
    {
      code: 7,
      message:
        /Cannot list backups at s3:\/\/shop-backups\/live: KMS\.DisabledException \(HTTP 400\): The key arn:aws:kms:eu-central-1:111122223333:key\/k1 is disabled\.$/,
      name: "an error this code does not know (a disabled KMS key): S3's words, not the network",
      reply: [
        400,
        errorXml('KMS.DisabledException', '', 'The key arn:aws:kms:eu-central-1:111122223333:key/k1 is disabled.'),
      ],
    },
    {
      code: 7,
      message: /the bucket of s3:\/\/shop-backups\/live does not exist/,
      name: 'NoSuchBucket',
      reply: [404, errorXml('NoSuchBucket', '<BucketName>shop-backups</BucketName>')],
    },
    {
      code: 2,
      headers: {'x-amz-bucket-region': 'us-west-2'},
      message: /is in region us-west-2, not the one configured \(PermanentRedirect\)/,
      name: 'a wrong region (301 PermanentRedirect)',
      reply: [301, errorXml('PermanentRedirect', '<Endpoint>shop-backups.s3.us-west-2.amazonaws.com</Endpoint>')],
    },
    {
      code: 2,
      message: /is in region us-west-2, not the one configured \(AuthorizationHeaderMalformed\)/,
      name: 'a wrong region (400 AuthorizationHeaderMalformed)',
      reply: [400, errorXml('AuthorizationHeaderMalformed', '<Region>us-west-2</Region>')],
    },
    {
      code: 7,
      message: /credentials for s3:\/\/shop-backups\/live have expired \(ExpiredToken\)/,
      name: 'an expired token',
      reply: [400, errorXml('ExpiredToken')],
    },
    {
      code: 7,
      message: /this machine's clock is off \(RequestTimeTooSkewed\)/,
      name: 'RequestTimeTooSkewed',
      reply: [403, errorXml('RequestTimeTooSkewed')],
    },
    {
      code: 7,
      message: /S3 kept asking to slow down \(SlowDown\) after 8 attempts/,
      name: 'SlowDown, every attempt',
      reply: [503, errorXml('SlowDown')],
      times: 20,
    },
  ]
  for (const {code, headers, message, name, reply, times = 1} of cases) {
    it(`${name}: exit ${code}, and the message says what to do`, async () => {
      // The SDK's backoff draws its delays from Math.random: zero keeps every retry, without the wait.
      const {random} = Math
      Math.random = () => 0
      const scope = nock(ENDPOINT)
        .get(/.*/)
        .times(times)
        .reply(reply[0], reply[1], {'content-type': 'application/xml', ...headers})
      const error = await failureOf(listAll).finally(() => {
        Math.random = random
      })
      expect(error.exitCode, error.message).to.equal(code)
      expect(error.message).to.match(message)
      expect(error.suggestion).to.be.a('string').and.not.equal('')
      if (reply[0] < 500) expect(error.suggestion).to.not.match(/network/)
      expect(`${error.message} ${error.suggestion}`).to.not.include('s3cr3t')
      if (times <= 2) expect(scope.isDone(), 'the requests reached the service').to.equal(true)
      else expect(scope.pendingMocks().length, 'retried, then gave up').to.equal(1)
    })
  }

  for (const [code, says] of [
    ['ENOTFOUND', /No such host: check the endpoint's host name, or the region/],
    ['EAI_AGAIN', /This machine's DNS did not answer/],
  ] as const) {
    it(`a name that does not resolve (${code}): the host named, and what to check`, async () => {
      const {random} = Math
      Math.random = () => 0
      const lookup = Object.assign(new Error(`getaddrinfo ${code} s3.service.test`), {
        code,
        hostname: 's3.service.test',
        syscall: 'getaddrinfo',
      })
      nock(ENDPOINT).get(/.*/).times(20).replyWithError(lookup)
      const error = await failureOf(listAll).finally(() => {
        Math.random = random
      })
      expect(error.exitCode).to.equal(7)
      expect(error.message).to.include(`no response from S3: ${code} (s3.service.test).`)
      expect(error.suggestion).to.match(says)
    })
  }
})
