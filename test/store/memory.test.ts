import {MemoryStore} from '../../src/store/memory.js'
import {storeContract} from './contract.js'

storeContract('memory', async () => new MemoryStore(), {givesBack: false})
