/** Sequence governance's public face (everything else in this folder is internal). */
export { sequencesModule } from './sequences-module';
