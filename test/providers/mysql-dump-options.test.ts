import {expect} from 'chai'

import {mysqldumpOptions} from '../../src/providers/database/mysql-dump-options.js'

const TOOLS = {
  mariadb: 'mysqldump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)',
  mariadbDump: 'mariadb-dump from 11.4.2-MariaDB, client 10.19 for Linux (x86_64)',
  mysql57: 'mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)',
  mysql80: 'mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)',
  mysql84: 'mysqldump  Ver 8.4.3 for Linux on x86_64 (MySQL Community Server - GPL)',
  mysql91: 'mysqldump  Ver 9.1.0 for Linux on x86_64 (MySQL Community Server - GPL)',
}
const SERVERS = {mariadb: '10.11.6-MariaDB-0+deb12u1', mysql57: '5.7.44-log', mysql80: '8.0.36', mysql84: '8.4.3'}

describe("MySQL's own mysqldump, told to write a dump any user can restore on any server", () => {
  it("gives MariaDB's tools nothing", () => {
    for (const server of Object.values(SERVERS)) {
      expect(mysqldumpOptions(TOOLS.mariadb, server)).to.deep.equal([])
      expect(mysqldumpOptions(TOOLS.mariadbDump, server)).to.deep.equal([])
    }
  })

  it('leaves GTIDs out always, and column statistics where the server has none', () => {
    expect(mysqldumpOptions(TOOLS.mysql57, SERVERS.mysql57)).to.deep.equal(['--set-gtid-purged=OFF'])
    expect(mysqldumpOptions(TOOLS.mysql57, SERVERS.mariadb)).to.deep.equal(['--set-gtid-purged=OFF'])
    for (const tool of [TOOLS.mysql80, TOOLS.mysql84, TOOLS.mysql91]) {
      expect(mysqldumpOptions(tool, SERVERS.mysql80)).to.deep.equal(['--set-gtid-purged=OFF'])
      expect(mysqldumpOptions(tool, SERVERS.mysql84)).to.deep.equal(['--set-gtid-purged=OFF'])
      expect(mysqldumpOptions(tool, SERVERS.mysql57)).to.deep.equal(['--set-gtid-purged=OFF', '--column-statistics=0'])
      expect(mysqldumpOptions(tool, SERVERS.mariadb)).to.deep.equal(['--set-gtid-purged=OFF', '--column-statistics=0'])
    }
  })

  it('gives a tool whose version it cannot read nothing, rather than an option it may not know', () => {
    expect(mysqldumpOptions('mysqldump (some fork) unknown', SERVERS.mysql80)).to.deep.equal([])
  })
})
