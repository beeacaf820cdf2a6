import {realSizeSuite} from '../helpers/real-size.js'

realSizeSuite('packs')
