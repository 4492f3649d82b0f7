/** The traffic capability's public face (everything else in this folder is internal). */
export { trafficModule } from './traffic-module';
