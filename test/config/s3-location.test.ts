import {expect} from 'chai'

import {parseS3Location} from '../../src/config/s3-location.js'
import {BackupError} from '../../src/errors.js'

const parse = (dsn: string) => parseS3Location(new URL(dsn), 'environments.live.store')

function problemOf(dsn: string): BackupError {
  try {
    parse(dsn)
  } catch (error) {
    if (error instanceof BackupError) return error
    throw error
  }

  throw new Error(`${dsn} was accepted`)
}

describe('S3 locations', () => {
  it('reads s3://bucket/prefix with its parameters, defaulting to Standard-IA and AES256', () => {
    expect(parse('s3://shop-backups/shop/live?region=eu-central-1')).to.deep.equal({
      bucket: 'shop-backups',
      credentials: undefined,
      endpoint: undefined,
      forcePathStyle: false,
      prefix: 'shop/live/',
      region: 'eu-central-1',
      sse: {kind: 'AES256'},
      storageClass: 'STANDARD_IA',
    })
    expect(
      parse(
        's3://k:s%2Fcret@minio-bucket?endpoint=http://127.0.0.1:9000&storageClass=STANDARD&sse=aws:kms&kmsKeyId=alias/x',
      ),
    ).to.deep.equal({
      bucket: 'minio-bucket',
      credentials: {accessKeyId: 'k', secretAccessKey: 's/cret'},
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
      prefix: '',
      region: undefined,
      sse: {keyId: 'alias/x', kind: 'aws:kms'},
      storageClass: 'STANDARD',
    })
  })

  it("reads the platform's DEFAULT_STORAGE_DSN, on AWS and on another S3 service", () => {
    const aws = parse(
      's3://AKIAEXAMPLE:wJalr%2BXUtn@shop-media.s3.eu-central-1.amazonaws.com/?auth=s3v4&domain=shop-media.divio-media.net',
    )
    expect(aws).to.include({bucket: 'shop-media', endpoint: undefined, prefix: '', region: 'eu-central-1'})
    expect(aws.credentials).to.deep.equal({accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'wJalr+XUtn'})
    expect(parse('s3://K:S@old-media.s3.amazonaws.com/?auth=s3v4')).to.include({
      bucket: 'old-media',
      region: 'us-east-1',
    })
    expect(parse('s3://K:S@shop-media.sos-ch-dk-2.exo.io/?auth=s3v4&domain=x.example')).to.include({
      bucket: 'shop-media',
      endpoint: 'https://sos-ch-dk-2.exo.io',
      forcePathStyle: true,
    })
  })

  it('refuses what it cannot honour, naming the field and never the secret', () => {
    const cases: Array<[string, RegExp]> = [
      ['s3://K:S3CRET@bucket-x/p?storageclass=STANDARD', /unknown parameter "storageclass"/],
      ['s3://bucket-x/p?storageClass=DEEP_ARCHIVE', /storageClass "DEEP_ARCHIVE" is not supported/],
      ['s3://bucket-x/p?sse=rot13', /sse "rot13" is not supported/],
      ['s3://bucket-x/p?kmsKeyId=abc', /kmsKeyId needs sse=aws:kms/],
      ['s3://Bad_Bucket/p', /"Bad_Bucket" is not a valid bucket name/],
      ['s3://bucket-x/a//b', /empty folder name/],
      ['s3://K:S3CRET@bucket-x/p?endpoint=ftp://x', /endpoint "ftp:\/\/x" is not a URL/],
      ['s3://onlykey@bucket-x/p', /access key without a secret/],
    ]
    for (const [dsn, message] of cases) {
      const problem = problemOf(dsn)
      expect(problem.message, dsn).to.match(message)
      expect(problem.message, dsn).to.match(/^environments\.live\.store: /)
      expect(problem.code).to.equal('CONFIG_INVALID')
      expect(problem.suggestion, dsn).to.be.a('string')
      expect(JSON.stringify(problem.toJSON())).to.not.include('S3CRET')
    }
  })
})
