import { describe, expect, it } from 'vitest';
import {
  addMqttClientId,
  addMqttDeliveryAttributes,
  isMqttWildcard,
  mqttDestination,
  mqttProtocolVersion,
  mqttServerAttributes,
  mqttSharedSubscription,
} from './mqtt.attributes.js';

describe('MQTT attributes', () => {
  it('knows wildcard filters by their levels', () => {
    expect(['a/+/c', 'a/#', '+', '#', '+/b', 'a/+'].map(isMqttWildcard)).toEqual([true, true, true, true, true, true]);
    expect(['a/b/c', 'a+/b', 'a/b#', 'a/#b', '', 'orders.*.get'].map(isMqttWildcard)).toEqual([false, false, false, false, false, false]);
  });

  it('uses a wildcard filter as the template, and the topic as the name', () => {
    expect(mqttDestination('devices/7/temp', 'devices/+/temp')).toEqual({ destination: 'devices/7/temp', template: 'devices/+/temp' });
    expect(mqttDestination('audit/eu/x', 'audit/#')).toEqual({ destination: 'audit/eu/x', template: 'audit/#' });
    expect(mqttDestination('orders/get', 'orders/get')).toEqual({ destination: 'orders/get' });
    expect(mqttDestination('orders/get')).toEqual({ destination: 'orders/get' });
  });

  it('splits a shared subscription into its group and filter', () => {
    expect(mqttSharedSubscription('$share/workers/jobs/+')).toEqual({ group: 'workers', filter: 'jobs/+' });
    expect(mqttSharedSubscription('$share/workers/jobs')).toEqual({ group: 'workers', filter: 'jobs' });
    expect(mqttSharedSubscription('$share//jobs')).toBeUndefined();
    expect(mqttSharedSubscription('$share/workers')).toBeUndefined();
    expect(mqttSharedSubscription('jobs/+')).toBeUndefined();
    expect(mqttSharedSubscription('$SYS/broker')).toBeUndefined();
  });

  it("reads server.address / server.port from the url option, with each scheme's default port, or Nest's default", () => {
    expect(mqttServerAttributes('mqtt://10.0.0.5:1884')).toEqual({ 'server.address': '10.0.0.5', 'server.port': 1884 });
    expect(mqttServerAttributes('mqtts://broker.example')).toEqual({ 'server.address': 'broker.example', 'server.port': 8883 });
    expect(mqttServerAttributes('wss://broker.example/mqtt')).toEqual({ 'server.address': 'broker.example', 'server.port': 443 });
    expect(mqttServerAttributes('mqtt://[::1]:1883')).toEqual({ 'server.address': '::1', 'server.port': 1883 });
    expect(mqttServerAttributes('127.0.0.1:1883')).toEqual({ 'server.address': '127.0.0.1', 'server.port': 1883 });
    expect(mqttServerAttributes('unix:///run/mosquitto.sock')).toEqual({});
    expect(mqttServerAttributes(undefined)).toEqual({ 'server.address': 'localhost', 'server.port': 1883 });
    expect(mqttServerAttributes('http://[bad')).toEqual({});
  });

  it('QoS and retain are namespaced, and only valid values are kept', () => {
    expect(addMqttDeliveryAttributes({}, 1, true)).toEqual({ 'nestjs.mqtt.qos': 1, 'nestjs.mqtt.retain': true });
    expect(addMqttDeliveryAttributes({}, 0, false)).toEqual({ 'nestjs.mqtt.qos': 0, 'nestjs.mqtt.retain': false });
    expect(addMqttDeliveryAttributes({}, 3, 'yes')).toEqual({});
    expect(addMqttDeliveryAttributes({}, undefined, undefined)).toEqual({});
  });

  it("takes the protocol version from the driver's client, else the option, else the driver's default 4; the client id from the client", () => {
    expect(mqttProtocolVersion({ options: { protocolVersion: 5 } }, 4)).toBe(5);
    expect(mqttProtocolVersion(null, 5)).toBe(5);
    expect(mqttProtocolVersion(undefined, undefined)).toBe(4);
    const throwing = { get options(): never { throw new Error('hostile'); } };
    expect(mqttProtocolVersion(throwing, 5)).toBe(5);
    expect(addMqttClientId({}, { options: { clientId: 'mqttjs_1' } })).toEqual({ 'messaging.client.id': 'mqttjs_1' });
    expect(addMqttClientId({}, { options: { clientId: '' } })).toEqual({});
    expect(addMqttClientId({}, throwing)).toEqual({});
  });
});
