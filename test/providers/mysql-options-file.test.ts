import {expect} from 'chai'

import {clientOptions} from '../../src/providers/database/mysql-options-file.js'

const tls = (options: string) => options.split('\n').filter((line) => line.startsWith('ssl') || line === 'skip-ssl')

describe("a MySQL DSN's client options file, in the words of the tools that read it", () => {
  it('writes the login, quoted, and a socket', () => {
    const options = clientOptions(
      new URL('mysql://sh%22op:p%5Cw%22d@db.internal:3307/shop?socket=/run/my%20sql.sock'),
      'mariadb',
    )
    expect(options).to.equal(
      '[client]\nhost="db.internal"\nport=3307\nuser="sh\\"op"\npassword="p\\\\w\\"d"\nsocket="/run/my sql.sock"\n',
    )
  })

  it("gives MySQL's tools the DSN's ssl-mode, and MariaDB's the options that mean it, failing closed", () => {
    const modes = {
      DISABLED: ['skip-ssl'],
      PREFERRED: ['ssl'],
      REQUIRED: ['ssl', 'ssl-verify-server-cert'],
      VERIFY_CA: ['ssl', 'ssl-verify-server-cert'],
      VERIFY_IDENTITY: ['ssl', 'ssl-verify-server-cert'],
    }
    for (const [mode, mariadb] of Object.entries(modes)) {
      for (const spelling of [`ssl-mode=${mode}`, `ssl_mode=${mode.toLowerCase()}`]) {
        const url = new URL(`mysql://u:p@db/shop?${spelling}`)
        expect(tls(clientOptions(url, 'mysql')), spelling).to.deep.equal([`ssl-mode=${mode}`])
        expect(tls(clientOptions(url, 'mariadb')), spelling).to.deep.equal(mariadb)
      }
    }
  })

  it('passes the certificate files to both', () => {
    const url = new URL('mysql://u:p@db/shop?ssl-mode=VERIFY_CA&ssl-ca=/etc/ca.pem&ssl_cert=/c.pem&ssl-key=/k.pem')
    expect(tls(clientOptions(url, 'mysql'))).to.deep.equal([
      'ssl-ca="/etc/ca.pem"',
      'ssl-cert="/c.pem"',
      'ssl-key="/k.pem"',
      'ssl-mode=VERIFY_CA',
    ])
    expect(tls(clientOptions(url, 'mariadb'))).to.deep.equal([
      'ssl-ca="/etc/ca.pem"',
      'ssl-cert="/c.pem"',
      'ssl-key="/k.pem"',
      'ssl',
      'ssl-verify-server-cert',
    ])
  })

  it('writes no TLS option where the DSN names none', () => {
    for (const family of ['mariadb', 'mysql'] as const)
      expect(tls(clientOptions(new URL('mysql://u:p@db/shop'), family))).to.deep.equal([])
  })
})
