/** The audit log's public face (everything else in this folder is internal). */
export { auditModule } from './audit-module';
export { auditCommand } from './audit-command';
