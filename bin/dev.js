#!/usr/bin/env node
// Runs the plugin from src/ without a build: in development mode oclif loads the TypeScript through tsx.
import {execute} from '@oclif/core'

await execute({development: true, dir: import.meta.url})
