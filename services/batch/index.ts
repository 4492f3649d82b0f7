/** The batch framework's public face (everything else in this folder is internal). */
export { batchModule } from './batch-module';
export { batchCommand } from './batch-command';
