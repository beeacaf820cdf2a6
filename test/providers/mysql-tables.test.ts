import {expect} from 'chai'

import {createdName, dropStatement} from '../../src/providers/database/mysql-tables.js'

const latin1 = (text: string) => Buffer.from(text).toString('latin1')

describe('the tables a MySQL dump creates, and the drop of the rest', () => {
  it('names what each schema line creates: tables, both kinds of view stand-in, sequences', () => {
    expect(createdName('CREATE TABLE `customers` (')).to.equal('customers')
    expect(createdName('/*!50001 CREATE VIEW `v` AS SELECT')).to.equal('v')
    expect(createdName('CREATE SEQUENCE `s` start with 1 minvalue 1')).to.equal('s')
    expect(createdName(latin1('CREATE TABLE `we``ird 文件` ('))).to.equal('we`ird 文件')
  })

  it('names nothing for lines that create nothing, or something else', () => {
    for (const line of [
      'INSERT INTO `customers` VALUES (1)',
      "(1,'CREATE TABLE `x` (')",
      '/*!50001 VIEW `v` AS select 1 AS `one` */;',
      '/*!50001 DROP VIEW IF EXISTS `v`*/;',
      'CREATE DEFINER=`x`@`y` FUNCTION `f`()',
      'DROP TABLE IF EXISTS `customers`;',
    ])
      expect(createdName(line), line).to.equal(undefined)
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
