'use strict';
// telemetry-audit Node preload, loaded with `NODE_OPTIONS=--require <this file>`.
//
// Node 20 ignores HTTP(S)_PROXY: neither `http`/`https` nor the bundled undici behind global `fetch` read it, so
// tools such as Serverless v3 and SST v2 would send their telemetry around the auditing proxy. This file routes
//   * `http`/`https` requests made through any stock `http.Agent`/`https.Agent` (the global agents and every
//     `new https.Agent({...})` a library builds), by patching the agent prototypes: https goes through a CONNECT
//     tunnel with TLS on top (SNI = the original host), plain http is sent in absolute form to the proxy;
//   * global `fetch`, by replacing undici's default global dispatcher with an undici `Agent` of the same class whose
//     `connect` function opens the same CONNECT tunnel.
// The target host name travels inside CONNECT or the absolute URL, so nothing resolves it locally: hosts that do
// not resolve offline (telemetry.sst.dev) still reach the proxy.
//
// Rules: plain Node built-ins only; never print (except to stderr with TELEMETRY_AUDIT_DEBUG=1); never throw into
// the host program. A bug in this file leaves Node's own behaviour in place. A proxy that refuses or cannot be reached
// is reported to the request as a connection error, never bypassed: audited traffic must not leave unrecorded.
// Where the runtime proxies natively (Node >= 22.21 / 24.5 with NODE_USE_ENV_PROXY=1), agents and the dispatcher it
// set up are left alone.

(function telemetryAuditPreload() {
  const DEBUG = process.env.TELEMETRY_AUDIT_DEBUG === '1';
  const INSTALLED = Symbol.for('telemetry-audit.preload');
  const UNDICI_DISPATCHER = Symbol.for('undici.globalDispatcher.1');
  const HANDSHAKE_TIMEOUT_MS = 30000;
  const MAX_PROXY_RESPONSE_HEAD = 64 * 1024;

  function debug(...parts) {
    if (!DEBUG) return;
    try {
      process.stderr.write(`[telemetry-audit preload ${process.pid}] ${parts.join(' ')}\n`);
    } catch {
      // stderr closed: nothing to report to.
    }
  }

  if (globalThis[INSTALLED]) return;
  try {
    Object.defineProperty(globalThis, INSTALLED, { value: true });
    install();
  } catch (err) {
    debug('disabled:', (err && err.stack) || err);
  }

  function install() {
    const net = require('net');
    const tls = require('tls');
    const http = require('http');
    const https = require('https');

    const env = process.env;
    const allProxy = parseProxy(env.all_proxy || env.ALL_PROXY || '');
    const proxies = {
      'http:': parseProxy(env.http_proxy || env.HTTP_PROXY || '') || allProxy,
      'https:': parseProxy(env.https_proxy || env.HTTPS_PROXY || '') || allProxy,
    };
    const noProxy = parseNoProxy(env.no_proxy || env.NO_PROXY || '');
    if (!proxies['http:'] && !proxies['https:']) {
      debug('no proxy configured: nothing to do');
      return;
    }

    // ---- configuration ----------------------------------------------------------------------------------------

    function parseProxy(value) {
      if (!value) return null;
      try {
        const url = new URL(value.includes('://') ? value : `http://${value}`);
        if (url.protocol !== 'http:') {
          debug('ignoring proxy with unsupported scheme:', url.protocol);
          return null;
        }
        const auth = url.username || url.password
          ? `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`)
            .toString('base64')}`
          : null;
        return { host: normalizeHost(url.hostname), port: Number(url.port) || 80, auth };
      } catch (err) {
        debug('ignoring unparsable proxy URL:', err && err.message);
        return null;
      }
    }

    function parseNoProxy(value) {
      const rules = [];
      for (const raw of value.split(/[\s,]+/)) {
        let entry = raw.trim().toLowerCase();
        if (!entry) continue;
        if (entry === '*') return '*';
        let port = 0;
        const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
        if (bracketed) {
          entry = bracketed[1];
          port = Number(bracketed[2] || 0);
        } else if ((entry.match(/:/g) || []).length === 1) {
          const at = entry.lastIndexOf(':');
          port = Number(entry.slice(at + 1)) || 0;
          entry = entry.slice(0, at);
        }
        const cidr = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(entry);
        if (cidr && net.isIPv4(cidr[1])) {
          rules.push({ cidr: [ipv4ToInt(cidr[1]), Number(cidr[2])], port });
          continue;
        }
        entry = entry.replace(/^\*?\.+/, '').replace(/\.$/, '');
        if (entry) rules.push({ host: entry, port });
      }
      return rules;
    }

    function ipv4ToInt(ip) {
      return ip.split('.').reduce((acc, octet) => ((acc << 8) | Number(octet)) >>> 0, 0);
    }

    function normalizeHost(host) {
      return String(host || '').toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
    }

    function isLoopback(host) {
      return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1' ||
        /^::ffff:127\./.test(host);
    }

    function bypassedByNoProxy(host, port) {
      if (noProxy === '*') return true;
      for (const rule of noProxy) {
        if (rule.port && rule.port !== port) continue;
        if (rule.cidr) {
          if (!net.isIPv4(host)) continue;
          const bits = rule.cidr[1];
          const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
          if (((ipv4ToInt(host) & mask) >>> 0) === ((rule.cidr[0] & mask) >>> 0)) return true;
        } else if (host === rule.host || host.endsWith(`.${rule.host}`)) {
          return true;
        }
      }
      return false;
    }

    /** The proxy to use for protocol://host:port, or null to connect directly. */
    function proxyFor(protocol, rawHost, rawPort) {
      const proxy = proxies[protocol];
      if (!proxy) return null;
      const host = normalizeHost(rawHost);
      const port = Number(rawPort) || (protocol === 'https:' ? 443 : 80);
      // Never send the proxy's own traffic to itself.
      if (port === proxy.port && (host === proxy.host || (isLoopback(host) && isLoopback(proxy.host)))) return null;
      if (bypassedByNoProxy(host, port)) {
        debug('direct (NO_PROXY):', `${protocol}//${host}:${port}`);
        return null;
      }
      return proxy;
    }

    function hostForUrl(host) {
      const name = normalizeHost(host);
      return net.isIPv6(name) ? `[${name}]` : name;
    }

    function authority(host, port) {
      return `${hostForUrl(host)}:${port}`;
    }

    // Node >= 22.21 / 24.5 with NODE_USE_ENV_PROXY=1 gives its proxy-aware agents a `proxyEnv` option.
    function proxiedNatively(agent) {
      return Boolean(agent && agent.options && agent.options.proxyEnv);
    }

    // ---- CONNECT tunnel ---------------------------------------------------------------------------------------

    function connectError(message, code) {
      const err = new Error(`telemetry-audit: ${message}`);
      err.code = code;
      return err;
    }

    /** Open a CONNECT tunnel to host:port through proxy; callback(err, socket) with the raw tunnel socket. */
    function openTunnel(proxy, host, port, callback) {
      const target = authority(host, port);
      debug('CONNECT', target, 'via', authority(proxy.host, proxy.port));
      const socket = net.connect({ host: proxy.host, port: proxy.port });
      const chunks = [];
      let received = 0;
      let finished = false;

      function finish(err) {
        if (finished) return;
        finished = true;
        socket.removeListener('readable', onReadable);
        socket.removeListener('error', onError);
        socket.removeListener('end', onEnd);
        socket.removeListener('timeout', onTimeout);
        socket.setTimeout(0);
        if (err) {
          socket.destroy();
          debug('tunnel failed:', target, err.message);
          callback(err);
        } else {
          callback(null, socket);
        }
      }
      function onError(err) {
        finish(err);
      }
      function onEnd() {
        finish(connectError(`proxy closed the connection during CONNECT ${target}`, 'ECONNRESET'));
      }
      function onTimeout() {
        finish(connectError(`proxy did not answer CONNECT ${target}`, 'ETIMEDOUT'));
      }
      function onReadable() {
        let chunk;
        while ((chunk = socket.read()) !== null) {
          chunks.push(chunk);
          received += chunk.length;
        }
        const head = Buffer.concat(chunks, received);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) {
          if (received > MAX_PROXY_RESPONSE_HEAD) finish(connectError('oversized proxy response', 'EPROTO'));
          return;
        }
        const statusLine = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
        if (!/^HTTP\/1\.[01] 2\d\d\b/.test(statusLine)) {
          finish(connectError(`proxy refused CONNECT ${target}: ${statusLine}`, 'ECONNREFUSED'));
          return;
        }
        if (end + 4 < head.length) socket.unshift(head.subarray(end + 4));
        finish(null);
      }

      socket.setTimeout(HANDSHAKE_TIMEOUT_MS);
      socket.on('readable', onReadable);
      socket.on('error', onError);
      socket.on('end', onEnd);
      socket.on('timeout', onTimeout);
      socket.once('connect', () => {
        const auth = proxy.auth ? `Proxy-Authorization: ${proxy.auth}\r\n` : '';
        socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`);
      });
    }

    // ---- https: CONNECT tunnel under every stock https.Agent --------------------------------------------------

    const originalHttpsCreateConnection = https.Agent.prototype.createConnection;
    https.Agent.prototype.createConnection = function createConnection(options, oncreate) {
      let proxy = null;
      try {
        // Agents call createConnection(options, oncreate); other call shapes keep Node's behaviour.
        if (typeof oncreate === 'function' && options && typeof options === 'object' && !options.socket &&
            !options.socketPath && !proxiedNatively(this)) {
          proxy = proxyFor('https:', options.host || options.hostname || 'localhost', options.port || 443);
        }
      } catch (err) {
        debug('https routing failed, connecting directly:', (err && err.stack) || err);
        proxy = null;
      }
      if (!proxy) return originalHttpsCreateConnection.apply(this, arguments);

      const agent = this;
      openTunnel(proxy, options.host || options.hostname, options.port || 443, (err, socket) => {
        if (err) {
          oncreate(err);
          return;
        }
        let secure;
        try {
          // Node's own createConnection does tls.connect(options) with servername (SNI) = the original host and
          // keeps its TLS session cache; `socket` makes it speak TLS over the tunnel instead of dialling.
          secure = originalHttpsCreateConnection.call(agent, { ...options, socket });
        } catch (tlsErr) {
          socket.destroy();
          oncreate(tlsErr);
          return;
        }
        oncreate(null, secure);
      });
      return undefined;
    };

    // ---- plain http: absolute-form requests to the proxy under every stock http.Agent --------------------------

    const originalAddRequest = http.Agent.prototype.addRequest;
    const originalCreateSocket = http.Agent.prototype.createSocket;
    http.Agent.prototype.addRequest = function addRequest(req, options, ...legacy) {
      let routed = null;
      try {
        routed = plainHttpThroughProxy(this, req, options);
      } catch (err) {
        debug('http routing failed, connecting directly:', (err && err.stack) || err);
        routed = null;
      }
      if (routed) return originalAddRequest.call(this, req, routed);
      return originalAddRequest.call(this, req, options, ...legacy);
    };

    function plainHttpThroughProxy(agent, req, options) {
      if (!options || typeof options !== 'object' || agent.protocol !== 'http:') return null;
      // Agents with their own connection logic (proxy agents, sockets over SSH...) route themselves.
      if (agent.createConnection !== net.createConnection || agent.createSocket !== originalCreateSocket) return null;
      if (options.socketPath || (agent.options && agent.options.socketPath) || proxiedNatively(agent)) return null;
      // A path already in absolute form means some other layer is talking to a proxy.
      if (typeof req.path !== 'string' || !req.path.startsWith('/')) return null;
      const host = options.host || options.hostname || 'localhost';
      const port = Number(options.port) || 80;
      const proxy = proxyFor('http:', host, port);
      if (!proxy) return null;

      const absolute = `http://${port === 80 ? hostForUrl(host) : authority(host, port)}${req.path}`;
      if (typeof req._header === 'string' && req._header) {
        // Headers already serialised (array headers or Expect): rewrite the request line.
        const lineEnd = req._header.indexOf('\r\n');
        req._header = `${req.method} ${absolute} HTTP/1.1${req._header.slice(lineEnd)}`;
      } else {
        if (proxy.auth && !req.getHeader('proxy-authorization')) req.setHeader('Proxy-Authorization', proxy.auth);
        req.path = absolute;
      }
      debug('http via proxy:', absolute);
      return { ...options, host: proxy.host, hostname: proxy.host, port: proxy.port, servername: undefined };
    }

    // ---- fetch: undici dispatcher whose connector tunnels -------------------------------------------------------

    function undiciConnect(opts, callback) {
      let done = false;
      const reply = (err, socket) => {
        if (done) return;
        done = true;
        callback(err, err ? null : socket);
      };
      const secure = opts.protocol === 'https:';
      const host = normalizeHost(opts.hostname || opts.host);
      const port = Number(opts.port) || (secure ? 443 : 80);
      const servername = opts.servername || (net.isIP(host) ? undefined : host);
      let proxy = null;
      try {
        proxy = proxyFor(secure ? 'https:' : 'http:', host, port);
      } catch (err) {
        debug('fetch routing failed, connecting directly:', (err && err.stack) || err);
      }

      function whenReady(socket, event) {
        const onError = (err) => {
          socket.destroy();
          reply(err);
        };
        const onTimeout = () => onError(connectError(`connect timeout to ${authority(host, port)}`,
          'UND_ERR_CONNECT_TIMEOUT'));
        socket.setTimeout(HANDSHAKE_TIMEOUT_MS);
        socket.once('error', onError);
        socket.once('timeout', onTimeout);
        socket.once(event, () => {
          socket.removeListener('error', onError);
          socket.removeListener('timeout', onTimeout);
          socket.setTimeout(0);
          reply(null, socket);
        });
      }
      const tlsOptions = { host, servername, ALPNProtocols: ['http/1.1'] };

      if (!proxy) {
        const localAddress = opts.localAddress || undefined;
        const socket = secure
          ? tls.connect({ ...tlsOptions, port, localAddress })
          : net.connect({ host, port, localAddress });
        whenReady(socket, secure ? 'secureConnect' : 'connect');
        return;
      }
      openTunnel(proxy, host, port, (err, tunnel) => {
        if (err) {
          reply(err);
          return;
        }
        if (!secure) {
          // Plain http inside a CONNECT tunnel, as undici's own ProxyAgent does.
          reply(null, tunnel);
          return;
        }
        whenReady(tls.connect({ ...tlsOptions, socket: tunnel }), 'secureConnect');
      });
    }

    function installFetchDispatcher() {
      if (typeof globalThis.fetch !== 'function') return;
      if (proxiedNatively(https.globalAgent)) {
        // NODE_USE_ENV_PROXY is honoured: Node installs its EnvHttpProxyAgent once preloads have run.
        debug('fetch: left to Node\'s own proxy support');
        return;
      }
      // Node loads its bundled undici lazily; touching one of its globals loads it and creates the default Agent.
      void globalThis.Headers;
      const current = globalThis[UNDICI_DISPATCHER];
      if (!current || typeof current.constructor !== 'function') {
        debug('fetch: no undici global dispatcher found');
        return;
      }
      if (current.constructor.name !== 'Agent') {
        // e.g. Node's own EnvHttpProxyAgent (NODE_USE_ENV_PROXY=1): already proxied.
        debug('fetch: leaving dispatcher', current.constructor.name, 'in place');
        return;
      }
      const Agent = current.constructor;
      globalThis[UNDICI_DISPATCHER] = new Agent({ connect: undiciConnect });
      debug('fetch: dispatcher installed');
    }

    try {
      installFetchDispatcher();
    } catch (err) {
      debug('fetch: left unproxied:', (err && err.stack) || err);
    }
    const describe = (proxy) => (proxy ? authority(proxy.host, proxy.port) : 'none');
    debug('installed; http proxy', describe(proxies['http:']), 'https proxy', describe(proxies['https:']));
  }
})();
