// The dashboard's entry point.
import './style.css';
import { App } from './app.ts';

new App(document.getElementById('app')!).start();
