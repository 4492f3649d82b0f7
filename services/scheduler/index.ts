/** The scheduler's public face (everything else in this folder is internal). */
export { schedulerModule, type SchedulerModuleOptions } from './scheduler-module';
export { schedulerJobQueue } from './job-api';
