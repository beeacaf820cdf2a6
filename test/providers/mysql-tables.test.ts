import {expect} from 'chai'

import {dropStatement, dumpedName} from '../../src/providers/database/mysql-tables.js'

const latin1 = (text: string) => Buffer.from(text).toString('latin1')

describe('the tables a MySQL dump creates, and the drop of the rest', () => {
  it('names what each schema line drops or creates: tables, views and their stand-ins of each dump tool, sequences', () => {
    const lines = {
      '/*!50001 CREATE TABLE `v` (': 'v',
      '/*!50001 CREATE VIEW `v` AS SELECT': 'v',
      '/*!50001 DROP TABLE IF EXISTS `v`*/;': 'v',
      '/*!50001 DROP VIEW IF EXISTS `v`*/;': 'v',
      '/*!50001 VIEW `v` AS select 1 AS `one` */;': 'v',
      'CREATE SEQUENCE `s` start with 1 minvalue 1': 's',
      'CREATE TABLE `customers` (': 'customers',
      'DROP SEQUENCE IF EXISTS `s`;': 's',
      'DROP TABLE IF EXISTS `customers`;': 'customers',
    }
    for (const [line, name] of Object.entries(lines)) expect(dumpedName(line), line).to.equal(name)
    expect(dumpedName(latin1('CREATE TABLE `we``ird 文件` ('))).to.equal('we`ird 文件')
  })

  it('names nothing for lines that drop or create no table, view or sequence', () => {
    for (const line of [
      'INSERT INTO `customers` VALUES (1)',
      "(1,'CREATE TABLE `x` (')",
      'CREATE DEFINER=`x`@`y` FUNCTION `f`()',
      '/*!50003 DROP FUNCTION IF EXISTS `f` */;',
      'DELIMITER ;;',
      '/*!50003 CREATE*/ /*!50017 DEFINER=`x`@`y`*/ /*!50003 TRIGGER `t` AFTER INSERT ON `customers`',
    ])
      expect(dumpedName(line), line).to.equal(undefined)
  })

  it('drops views as views and the rest as tables, foreign keys notwithstanding, every name quoted', () => {
    expect(
      dropStatement([
        {name: 'loyalty', type: 'BASE TABLE'},
        {name: 'report`s', type: 'VIEW'},
        {name: 'numbers', type: 'SEQUENCE'},
      ]),
    ).to.equal('SET FOREIGN_KEY_CHECKS = 0; DROP VIEW IF EXISTS `report``s`; DROP TABLE IF EXISTS `loyalty`, `numbers`')
    expect(dropStatement([{name: 't', type: 'BASE TABLE'}])).to.equal(
      'SET FOREIGN_KEY_CHECKS = 0; DROP TABLE IF EXISTS `t`',
    )
  })
})
