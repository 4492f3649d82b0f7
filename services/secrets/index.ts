/** The secrets capability's public face (everything else in this folder is internal). */
export { secretsModule } from './secrets-module';
