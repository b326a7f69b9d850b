// Vigil webhook media type for Zabbix 6.0 and later (Duktape, ECMAScript 5).
//
// Posts the event to Vigil as one JSON object: every parameter of the media type except the
// vigil_* ones (where to post and how to authenticate) and http_proxy, under its own name,
// as Zabbix resolved it. A macro Zabbix could not resolve arrives as its literal text (for
// example "{EVENT.TIMESTAMP}" before Zabbix 7.0, or every macro from the Test button) and
// Vigil reads it as absent. {EVENT.TAGSJSON} is sent as the JSON array it is.
//
// vigil_auth: "header" (default) sends "<vigil_token_header>: <vigil_token>"; "hmac" signs
// "<unix seconds>.<body>" with HMAC-SHA256 (X-Vigil-Timestamp, X-Vigil-Signature); "none"
// sends no credential (an integration that accepts its URL key alone).
var Vigil = {
    OWN_PARAMS: ['vigil_url', 'vigil_auth', 'vigil_token', 'vigil_token_header', 'http_proxy'],

    body: function (params) {
        var body = {},
            key;

        for (key in params) {
            if (params.hasOwnProperty(key) && Vigil.OWN_PARAMS.indexOf(key) === -1) {
                body[key] = params[key];
            }
        }
        if (typeof body.tags === 'string' && body.tags.charAt(0) === '[') {
            try {
                body.tags = JSON.parse(body.tags);
            }
            catch (error) {
                // Sent as the text Zabbix gave; Vigil reports what it cannot read.
            }
        }
        return JSON.stringify(body);
    },

    post: function (params, text) {
        var request = new HttpRequest(),
            auth = params.vigil_auth || 'header',
            response,
            status,
            timestamp;

        if (typeof params.vigil_url !== 'string' || !/^https?:\/\//.test(params.vigil_url)) {
            throw 'vigil_url must be the http(s) URL of the Vigil integration.';
        }
        if (typeof params.http_proxy === 'string' && params.http_proxy !== '') {
            request.setProxy(params.http_proxy);
        }
        request.addHeader('Content-Type: application/json');
        if (auth === 'header') {
            request.addHeader((params.vigil_token_header || 'X-Vigil-Token') + ': ' + params.vigil_token);
        }
        else if (auth === 'hmac') {
            if (typeof hmac !== 'function') {
                throw 'this Zabbix has no hmac() function: use vigil_auth "header".';
            }
            timestamp = String(Math.floor(Date.now() / 1000));
            request.addHeader('X-Vigil-Timestamp: ' + timestamp);
            request.addHeader('X-Vigil-Signature: sha256=' + hmac('sha256', params.vigil_token, timestamp + '.' + text));
        }
        else if (auth !== 'none') {
            throw 'vigil_auth must be "header", "hmac" or "none".';
        }

        response = request.post(params.vigil_url, text);
        status = request.getStatus();
        if (status < 200 || status >= 300) {
            throw 'Vigil answered HTTP ' + status + ': ' + response;
        }
        return response;
    }
};

try {
    var params = JSON.parse(value);

    Vigil.post(params, Vigil.body(params));
    return 'OK';
}
catch (error) {
    Zabbix.log(3, '[Vigil webhook] notification failed: ' + error);
    throw 'Vigil notification failed: ' + error;
}
