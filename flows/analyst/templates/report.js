/* The report's one script: plain JavaScript, no library. It reads the JSON document in
   #report-data (encodings: flows/analyst/payload.py) and draws the boards, the history charts
   and the divergence table; controls change the view and the address (#window=..&coin=..&day=..)
   so that a view is linkable. Colours follow flows/analyst/scale.py, whose ramp and scales come
   with the data. The CSP forbids inline style attributes: styles are set through the DOM.
   States that `ht backfill` reconstructed (D.backfill names them by code) are marked: a band
   over their period on the history charts, a badge and a corner mark on the boards. */
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('report-data').textContent);
  var COHORTS = D.cohorts.map(function (c) { return {id: c[0], name: c[1], ladder: c[2]}; });
  var NC = COHORTS.length;
  var PNL_START = COHORTS.findIndex(function (c) { return c.ladder === 'pnl'; });
  var SVG = 'http://www.w3.org/2000/svg';
  var state = {
    window: D.window, day: D.days.length - 1, coin: D.coin, filter: '', minUsd: 0, second: 'u',
    sort: {bias: {key: 'oi', dir: -1}, change: {key: 'oi', dir: -1}}, hover: null
  };

  // ------------------------------------------------------------------ decoding
  function nums(text, scale) {
    return text.split(',').map(function (x) { return x === '' ? null : (scale ? +x / scale : +x); });
  }
  var cache = {};
  function memo(key, make) { if (!(key in cache)) { cache[key] = make(); } return cache[key]; }
  function board(w, d) {
    return memo('b' + w + d, function () {
      var r = D.boards[w][d];
      return {oi: nums(r.oi), b: nums(r.b, 1e4), v: nums(r.v), n: nums(r.n), c: nums(r.c, 10),
        u: nums(r.u), s: r.s, nc: r.nc ? nums(r.nc) : null, f: r.f ? nums(r.f) : null,
        p: r.p ? nums(r.p) : null, cs: r.cs || '.', ps: r.ps || '.',
        bs: r.bs === undefined ? (r.cs || '.') : r.bs};
    });
  }
  function market(d) {
    if (!D.market) { return null; }
    return memo('m' + d, function () {
      var r = D.market[d];
      return {px: nums(r.px), oi: nums(r.oi), fr: nums(r.fr)};
    });
  }
  function divergence(w, d) {
    return memo('d' + w + d, function () {
      var r = D.divergence[w][d];
      return {sb: nums(r.sb, 1e4), rb: nums(r.rb, 1e4), sv: nums(r.sv), rv: nums(r.rv),
        sp: nums(r.sp, 10), dc: nums(r.dc, 10)};
    });
  }
  var ALPHA = D.pack.alphabet;
  function unpack(text, from, count, low, high) {
    var out = new Array(count);
    for (var i = 0; i < count; i++) {
      var a = text.charAt(from + 2 * i), b = text.charAt(from + 2 * i + 1);
      out[i] = a === '.' ? null
        : low + (ALPHA.indexOf(a) * 64 + ALPHA.indexOf(b)) / D.pack.levels * (high - low);
    }
    return out;
  }
  function seriesOf(w, coin) {
    return memo('h' + w + '\u0000' + coin, function () {
      var text = D.history.series[w][coin], n = D.history.points, bias = [];
      for (var k = 0; k < NC; k++) { bias.push(unpack(text, 2 * n * k, n, 0, 1)); }
      var s = D.pack.spread;
      return {bias: bias, spread: unpack(text, 2 * n * NC, n, -s, s),
        price: D.history.price ? nums(D.history.price[coin] || '') : null,
        closes: D.history.closes[w][coin] || []};
    });
  }

  // ------------------------------------------------------------------ colours and labels
  function rgb(hex) { return [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16); }); }
  function hex(c) {
    return '#' + c.map(function (v) {
      return ('0' + Math.round(Math.max(0, Math.min(255, v))).toString(16)).slice(-2);
    }).join('');
  }
  var RAMP = D.ramp.map(rgb);
  function ramp(t) {
    t = Math.max(0, Math.min(1, t));
    var scaled = t * (RAMP.length - 1), low = Math.min(Math.floor(scaled), RAMP.length - 2);
    var f = scaled - low, a = RAMP[low], b = RAMP[low + 1];
    return [0, 1, 2].map(function (i) { return a[i] + (b[i] - a[i]) * f; });
  }
  function changePos(pp) {
    var m = Math.sqrt(Math.min(Math.abs(pp), D.change.full) / D.change.full);
    return 0.5 + (pp < 0 ? -m : m) / 2;
  }
  function sizeWeight(usd) {
    var s = D.size;
    if (!usd || usd <= s.floor) { return s.min; }
    var t = Math.min(1, (Math.log10(usd) - Math.log10(s.floor)) / (Math.log10(s.full) - Math.log10(s.floor)));
    return s.min + (1 - s.min) * t;
  }
  function weighted(c, w) {
    // Rounded to whole channels first, as scale.ramp_colour is, then mixed with white.
    return hex(c.map(function (v) { return 255 + (Math.round(v) - 255) * w; }));
  }
  function lightInk(h) {
    var l = rgb(h).map(function (v) {
      var c = v / 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var lum = 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
    return 1.05 / (lum + 0.05) > (lum + 0.05) / 0.05;
  }
  var UNITS = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'K']];
  function usd(v, signed) {
    if (v === null || v === undefined || isNaN(v)) { return '–'; }
    var sign = v < 0 ? '−' : (signed && v > 0 ? '+' : ''), m = Math.abs(v);
    for (var i = 0; i < UNITS.length; i++) {
      if (m >= UNITS[i][0] * 0.9995) {
        var x = m / UNITS[i][0];
        return sign + '$' + (x < 9.95 ? x.toFixed(1) : x.toFixed(0)) + UNITS[i][1];
      }
    }
    var t = m.toFixed(0);
    return t === '0' ? '$0' : sign + '$' + t;
  }
  function pp(v, unit) {
    if (v === null || v === undefined) { return '–'; }
    var r = Math.round(v * 10) / 10;
    if (r === 0) { return '0.0' + (unit || 'pp'); }
    return (r > 0 ? '+' : '−') + Math.abs(r).toFixed(1) + (unit || 'pp');
  }
  function price(v) {
    if (v === null || v === undefined) { return '–'; }
    var a = Math.abs(v);
    return '$' + (a >= 1000 ? v.toLocaleString('en-US', {maximumFractionDigits: 0})
      : a >= 1 ? v.toFixed(2) : v.toPrecision(3));
  }
  function funding(v) {
    return v === null || v === undefined ? '–' : (v * 100).toFixed(4).replace('-', '−') + '%';
  }
  // ------------------------------------------------------------------ backfilled states
  function backfilled(code) { return !!(code && D.backfill[code]); }
  function dayMarks(bd) {
    // Which side of the day-over-day comparison came from a backfilled close: 'D', 'D-1'.
    var out = [];
    if (backfilled(bd.cs)) { out.push('D'); }
    if (backfilled(bd.ps)) { out.push('D-1'); }
    return out;
  }
  function badge(id, text) {
    var b = $(id);
    b.textContent = text || '';
    b.hidden = !text;
  }

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) { if (attrs[k] !== null && attrs[k] !== undefined) { e.setAttribute(k, attrs[k]); } }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) { e.setAttribute(k, attrs[k]); }
    return e;
  }
  function $(id) { return document.getElementById(id); }
  function visible(coin) { return !state.filter || coin.toLowerCase().indexOf(state.filter) >= 0; }

  // ------------------------------------------------------------------ the boards
  function sortButton(kind, key, label, title) {
    var s = state.sort[kind], active = s.key === key;
    var b = el('button', {type: 'button', 'class': 'sort', 'data-sort': key, title: title || 'sort'}, label);
    if (active) { b.appendChild(el('span', {'class': 'arrow', 'aria-hidden': 'true'}, s.dir < 0 ? ' ▼' : ' ▲')); }
    b.addEventListener('click', function () {
      state.sort[kind] = {key: key, dir: active ? -s.dir : (key === 'coin' ? 1 : -1)};
      render();
    });
    return b;
  }
  function ariaSort(kind, key) {
    var s = state.sort[kind];
    return s.key === key ? (s.dir < 0 ? 'descending' : 'ascending') : null;
  }
  function order(kind, bd, mk) {
    var s = state.sort[kind], idx = [];
    for (var i = 0; i < D.coins.length; i++) { if (visible(D.coins[i])) { idx.push(i); } }
    function value(i) {
      if (s.key === 'coin') { return D.coins[i].toLowerCase(); }
      if (s.key === 'oi') { return bd.oi[i]; }
      if (s.key === 'px' || s.key === 'moi' || s.key === 'fr') { return mk ? mk[s.key === 'moi' ? 'oi' : s.key][i] : null; }
      var k = +s.key.slice(1), j = i * NC + k;
      return kind === 'bias' ? bd.b[j] : (bd.s.charAt(j) === '.' ? bd.c[j] : null);
    }
    idx.sort(function (a, b) {
      var x = value(a), y = value(b);
      if (x === null || x === undefined) { return (y === null || y === undefined) ? a - b : 1; }
      if (y === null || y === undefined) { return -1; }
      return x < y ? -s.dir : x > y ? s.dir : a - b;  // ties keep open-interest order
    });
    return idx;
  }
  function head(table, kind, mk) {
    var thead = el('thead'), r1 = el('tr'), r2 = el('tr');
    var corner = el('th', {'class': 'corner', rowspan: '2', scope: 'col', 'aria-sort': ariaSort(kind, 'coin') || ariaSort(kind, 'oi')});
    corner.appendChild(sortButton(kind, 'coin', 'coin', 'sort by coin name'));
    corner.appendChild(el('br'));
    corner.appendChild(sortButton(kind, 'oi', 'open interest', 'sort by open interest (window all)'));
    r1.appendChild(corner);
    if (mk) {
      [['px', 'price', 'mark price'], ['moi', 'OI', 'open interest, USD (market)'],
        ['fr', 'funding /h', 'hourly funding rate']].forEach(function (m) {
        var th = el('th', {'class': 'market', rowspan: '2', scope: 'col', 'aria-sort': ariaSort(kind, m[0])});
        th.appendChild(sortButton(kind, m[0], m[1], 'sort by ' + m[2]));
        r1.appendChild(th);
      });
    }
    [['size', 0, PNL_START], ['pnl', PNL_START, NC]].forEach(function (l) {
      // The title in a span that sticks by the coin column: on a phone it stays readable.
      var th = el('th', {'class': 'ladder' + (l[1] ? ' ladder-start' : ''), colspan: String(l[2] - l[1]), scope: 'colgroup'});
      th.appendChild(el('span', null, D.ladders[l[0]]));
      r1.appendChild(th);
    });
    COHORTS.forEach(function (c, k) {
      var key = 'c' + k;
      var th = el('th', {'class': 'cohort' + (k === PNL_START ? ' ladder-start' : ''), scope: 'col',
        'data-cohort': String(c.id), 'aria-sort': ariaSort(kind, key)});
      th.appendChild(sortButton(kind, key, c.name, 'sort by ' + c.name + (kind === 'bias' ? ' bias' : ' bias change')));
      r2.appendChild(th);
    });
    thead.appendChild(r1);
    thead.appendChild(r2);
    table.appendChild(thead);
    return r2;
  }
  function biasCell(td, bd, j, coin, c) {
    var b = bd.b[j], v = bd.v[j], n = bd.n[j];
    var tip = [coin + ' · ' + c.name];
    if (v === null) {
      td.classList.add('absent'); tip.push('no row');
      td.appendChild(el('b', null, '–'));
    } else if (b === null) {
      // In a short window an empty cell is a fact (no position opened within it), not a gap.
      td.classList.add('absent');
      tip.push(state.window === 'all' ? 'no positions: no bias' : 'no position opened within ' + state.window + ': no bias');
      td.appendChild(el('b', null, '–'));
    } else {
      td.setAttribute('data-bias', b.toFixed(4));
      td.setAttribute('data-usd', String(v));
      tip.push('long ' + usd(b * v) + ' · short ' + usd((1 - b) * v) + ' · ' + (n || 0).toLocaleString('en-US') + ' positions');
      tip.push('bias ' + b.toFixed(3) + ' (net ' + (2 * b - 1 >= 0 ? '+' : '') + (2 * b - 1).toFixed(3) + ')');
      paint(td, ramp(b), v, v);
      td.appendChild(el('b', null, b.toFixed(2)));
      td.appendChild(el('span', null, usd(v)));
    }
    td.title = tip.join('\n');
  }
  function paint(td, colour, weightUsd, sizeUsd) {
    if (sizeUsd < state.minUsd) { td.classList.add('muted'); return; }
    var bg = weighted(colour, sizeWeight(weightUsd));
    td.style.backgroundColor = bg;
    if (lightInk(bg)) { td.classList.add('light'); }
  }
  var STATUS = {g: 'no D-1', n: 'new', c: 'closed'};
  function changeCell(td, bd, j, coin, c, prevDay) {
    var st = bd.s.charAt(j), ch = bd.c[j], v = bd.v[j] || 0, u = bd.u[j];
    var before = u === null ? null : v - u;
    var tip = [coin + ' · ' + c.name];
    var second = state.second !== 'u' && bd[state.second] ? bd[state.second][j] : u;
    if (st === '-') {
      td.classList.add('absent'); tip.push('no row on either day');
      td.appendChild(el('b', null, '–'));
    } else {
      if (ch !== null) { td.setAttribute('data-change-pp', ch.toFixed(1)); }
      if (STATUS[st]) { td.setAttribute('data-status', {g: 'gap', n: 'new', c: 'closed'}[st]); }
      td.setAttribute('data-usd', String(v));
      if (st === 'g') { tip.push('no close on ' + prevDay + ': no change (never a zero)'); }
      else if (st === 'n') { tip.push('new since ' + prevDay); }
      else if (st === 'c') { tip.push('closed since ' + prevDay); }
      if (ch !== null) { tip.push('bias ' + pp(ch) + ' vs the close of ' + prevDay); }
      tip.push('notional ' + usd(v) + (u === null ? '' : ' (' + usd(u, true) + ', was ' + usd(before) + ')'));
      if (bd.nc && bd.nc[j] !== null) {
        // The mart splits the net (long − short) notional's change, not the total's.
        tip.push('net (long − short) ' + usd(bd.nc[j], true) + ' = flow ' + usd(bd.f[j], true) +
          ' + price effect ' + usd(bd.p[j], true));
      }
      if (st !== '.' || ch === null) {
        td.classList.add('absent');
        td.appendChild(el('b', null, STATUS[st] || '–'));
      } else {
        paint(td, ramp(changePos(ch)), Math.max(v, before || 0), Math.max(v, before || 0));
        td.appendChild(el('b', null, pp(ch)));
      }
      if (second !== null && st !== 'g') { td.appendChild(el('span', null, usd(second, true))); }
    }
    td.title = tip.join('\n');
  }
  function markCell(td, kind, bd, prevDay) {
    // A value from a backfilled close: a line in the tooltip; on the change board a corner
    // mark too (the change itself compares with, or is, a reconstructed state).
    var lines = [];
    if (kind === 'bias') {
      lines.push('this state is ' + D.backfill[bd.bs]);
    } else {
      if (backfilled(bd.cs)) { lines.push('this close is ' + D.backfill[bd.cs]); }
      if (backfilled(bd.ps)) { lines.push('the close of ' + prevDay + ' is ' + D.backfill[bd.ps]); }
      if (!td.classList.contains('absent')) { td.classList.add('from-backfill'); }
    }
    td.title = td.title + '\n' + lines.join('\n');
  }
  function renderBoard(kind) {
    var table = $(kind + '-board'), w = state.window, d = state.day;
    var bd = board(w, d), mk = kind === 'bias' ? market(d) : null;
    var prevDay = d > 0 ? D.days[d - 1].day : 'the previous day';
    var prev = new Date(D.days[d].day + 'T00:00:00Z');
    prev.setUTCDate(prev.getUTCDate() - 1);
    prevDay = prev.toISOString().slice(0, 10);
    table.textContent = '';
    table.setAttribute('data-window', w);
    table.setAttribute('data-day', D.days[d].day);
    // Backfilled closes: on the bias board its own state, on the change board D and D-1.
    var marks = kind === 'bias' ? (backfilled(bd.bs) ? ['D'] : []) : dayMarks(bd);
    if (marks.length) { table.setAttribute('data-backfilled', marks.join(' ')); } else { table.removeAttribute('data-backfilled'); }
    var derived = backfilled(kind === 'bias' ? bd.bs : bd.cs);
    var r2 = head(table, kind, mk);
    var tbody = el('tbody'), rows = order(kind, bd, mk);
    rows.forEach(function (i) {
      var coin = D.coins[i], tr = el('tr', {'data-coin': coin});
      var th = el('th', {'class': 'coin', scope: 'row'});
      var pick = el('button', {type: 'button', 'class': 'pick', title: 'show ' + coin + "'s history"}, coin);
      pick.addEventListener('click', function () { setCoin(coin); $('history').scrollIntoView(); });
      th.appendChild(pick);
      th.appendChild(el('small', derived ? {title: 'open interest at a backfilled state: the size ladder\'s sum'} : null, usd(bd.oi[i])));
      tr.appendChild(th);
      if (mk) {
        tr.appendChild(el('td', {'class': 'market'}, price(mk.px[i])));
        tr.appendChild(el('td', {'class': 'market'}, usd(mk.oi[i])));
        var f = el('td', {'class': 'market', title: mk.fr[i] === null ? '' : 'annualised ' + (mk.fr[i] * 24 * 365 * 100).toFixed(1) + '%'}, funding(mk.fr[i]));
        tr.appendChild(f);
      }
      COHORTS.forEach(function (c, k) {
        var j = i * NC + k;
        var td = el('td', {'class': 'cell' + (k === PNL_START ? ' ladder-start' : ''), 'data-coin': coin, 'data-cohort': String(c.id)});
        if (kind === 'bias') { biasCell(td, bd, j, coin, c); } else { changeCell(td, bd, j, coin, c, prevDay); }
        if (marks.length) { markCell(td, kind, bd, prevDay); }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    if (!rows.length) {
      var tr = el('tr'), td = el('td', {'class': 'empty', colspan: String(NC + 1 + (mk ? 3 : 0))},
        state.filter ? 'no coin matches “' + state.filter + '”' : 'no coins in this window');
      tr.appendChild(td); tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    stickHeads();
  }
  // The boards scroll sideways in a box of their own (the coin column sticks to its left),
  // and down with the page. A box that scrolls sideways is a scroll container, so CSS alone
  // would pin the headings to the box's top, which leaves the screen with the page; so the
  // headings' sticky offset follows the page instead: wherever the box's top has gone under
  // the controls, they sit just below the controls, until the table's end.
  var stickQueued = false;
  function stickHeads() {
    stickQueued = false;
    var bar = $('controls').getBoundingClientRect().bottom;
    ['bias', 'change'].forEach(function (kind) {
      var table = $(kind + '-board'), rows = table.querySelectorAll('thead tr');
      if (rows.length < 2) { return; }
      var box = table.getBoundingClientRect(), first = rows[0].getBoundingClientRect().height;
      var room = box.height - first - rows[1].getBoundingClientRect().height;
      var offset = Math.max(0, Math.min(bar - box.top, room));
      Array.prototype.forEach.call(rows[0].children, function (th) { th.style.top = offset + 'px'; });
      Array.prototype.forEach.call(rows[1].children, function (th) { th.style.top = (offset + first) + 'px'; });
    });
  }
  function queueStick() {
    if (!stickQueued) { stickQueued = true; window.requestAnimationFrame(stickHeads); }
  }

  // ------------------------------------------------------------------ legends
  function gradient(stops) {
    return 'linear-gradient(to right, ' + stops.map(function (c) { return hex(c); }).join(', ') + ')';
  }
  function legend(id, kind) {
    var box = $(id);
    box.textContent = '';
    var bar = el('div', {'class': 'ramp'}), ticks = el('div', {'class': 'ticks'});
    var stops = [];
    for (var i = 0; i <= 20; i++) { stops.push(ramp(i / 20)); }
    bar.style.background = gradient(stops);
    var labels = kind === 'bias'
      ? [[0, '0 · all short'], [0.5, '0.5 · neutral'], [1, '1 · all long']]
      : D.change.ticks.map(function (t) {
        return [changePos(t), (t > 0 ? '+' : t < 0 ? '−' : '') + Math.abs(t), Math.abs(t) === 50 || Math.abs(t) === 5];
      });
    labels.forEach(function (l) {
      var s = el('span', null, l[1]);
      s.style.left = (l[0] * 100) + '%';
      s.classList.add(l[0] === 0 ? 'first' : l[0] === 1 ? 'last' : 'mid');
      if (l[2]) { s.classList.add('minor'); }  // left out on a phone, where they would touch
      ticks.appendChild(s);
    });
    box.appendChild(bar);
    box.appendChild(ticks);
    var p = el('p');
    p.appendChild(el('span', {'class': 'swatch absent'}));
    p.appendChild(document.createTextNode(kind === 'bias' ? ' no positions (in 24h/7d/30d: none opened within) · notional:'
      : ' new, closed, no previous day or no bias · notional:'));
    var sample = ramp(kind === 'bias' ? 0.9 : changePos(50));
    [[1e3, '≤$1K'], [1e5, '$100K'], [1e7, '≥$10M']].forEach(function (s) {
      var sw = el('span', {'class': 'swatch'});
      sw.style.backgroundColor = weighted(sample, sizeWeight(s[0]));
      p.appendChild(sw);
      p.appendChild(document.createTextNode(' ' + s[1] + ' '));
    });
    var m = el('span', {'class': 'swatch muted'});
    p.appendChild(m);
    p.appendChild(document.createTextNode(' below the minimum'));
    box.appendChild(p);
  }

  // ------------------------------------------------------------------ history charts
  var H = D.history;
  function timeAt(i) { return new Date(Date.parse(H.start) + i * H.bucket * 60000); }
  function fmtTime(t) { return t.toISOString().slice(0, 16).replace('T', ' '); }
  function bucketLabel() {
    var b = H.bucket;
    return b < 60 ? b + '-minute' : b === 60 ? 'hourly' : b === 1440 ? 'daily' : (b / 60) + '-hourly';
  }
  function xTicks(n, width) {
    // Midnights UTC, thinned so that labels never touch (one per ~80px); within a short
    // span, every 6 hours.
    var out = [], per = 1440 / H.bucket, start = Date.parse(H.start);
    var first = Math.ceil(start / 86400000) * 86400000, fit = Math.max(2, Math.floor(width / 80));
    var step = n / per <= 2 ? per / 4 : per * Math.ceil(n / per / fit);
    if (n / per <= 2) { first = Math.ceil(start / 21600000) * 21600000; }
    for (var t = first; (t - start) / 60000 / H.bucket < n; t += step * H.bucket * 60000) {
      out.push((t - start) / 60000 / H.bucket);
    }
    return out;
  }
  function tickLabel(i) {
    var t = fmtTime(timeAt(i));
    return t.slice(11) === '00:00' ? t.slice(5, 10) : t.slice(5);
  }
  function path(values, x, y, clampTo) {
    var d = '', pen = false;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === null) { pen = false; continue; }
      if (clampTo) { v = clampTo(v); }
      d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1);
      pen = true;
    }
    return d;
  }
  function area(values, x, y, base, keep) {
    var d = '', run = [];
    function flush() {
      if (run.length) {
        d += 'M' + x(run[0][0]).toFixed(1) + ' ' + y(base).toFixed(1);
        run.forEach(function (p) { d += 'L' + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1); });
        d += 'L' + x(run[run.length - 1][0]).toFixed(1) + ' ' + y(base).toFixed(1) + 'Z';
      }
      run = [];
    }
    values.forEach(function (v, i) { if (v === null) { flush(); } else { run.push([i, keep(v)]); } });
    flush();
    return d;
  }
  // Backfilled periods of a coin's history (payload.bands): runs of points whose states
  // `ht backfill` reconstructed, one source each, through the points between them that hold
  // no state of the coin.
  function bands(w, coin) {
    var runs = (H.bands && H.bands[w] && H.bands[w][coin]) || [];
    return runs.map(function (r) { return {from: r[0], to: r[1], code: r[2]}; });
  }
  function stateless(h, i) { return h.bias.every(function (b) { return b[i] === null; }); }
  function bandAt(runs, i) {
    for (var k = 0; k < runs.length; k++) { if (runs[k].from <= i && i <= runs[k].to) { return runs[k]; } }
    return null;
  }
  // In a band, two states may be many points apart (the export's are 12 hours): a dashed
  // line joins them across the points that hold no state at all, never across a state where
  // the cohort held nothing, nor out of the band.
  function bridges(values, x, y, runs, h) {
    var d = '';
    runs.forEach(function (r) {
      var last = null;
      for (var i = r.from; i <= r.to; i++) {
        if (values[i] === null) { if (!stateless(h, i)) { last = null; } continue; }
        if (last !== null && i - last > 1) {
          d += 'M' + x(last).toFixed(1) + ' ' + y(values[last]).toFixed(1) + 'L' + x(i).toFixed(1) + ' ' + y(values[i]).toFixed(1);
        }
        last = i;
      }
    });
    return d;
  }
  // A point no line of path() reaches (no neighbour on either side) would not show at all:
  // a dot each.
  function dots(s, values, x, y, r, cls) {
    values.forEach(function (v, i) {
      if (v !== null && (i === 0 || values[i - 1] === null) && (i === values.length - 1 || values[i + 1] === null)) {
        s.appendChild(svg('circle', {cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: r, 'class': cls}));
      }
    });
  }
  function drawBands(c, runs, height, labelled) {
    var m = c.margin;
    runs.forEach(function (r) {
      var x0 = Math.max(m.l, c.x(r.from - 0.5)), x1 = Math.min(c.width - m.r, c.x(r.to + 0.5));
      var rect = svg('rect', {x: x0.toFixed(1), y: m.t, width: Math.max(2, x1 - x0).toFixed(1),
        height: height - m.t - m.b, 'class': 'band', 'data-source': r.code});
      var tip = svg('title');
      tip.textContent = D.backfill[r.code] + ': ' + fmtTime(timeAt(r.from)) + ' to ' + fmtTime(timeAt(r.to + 1)) + ' UTC';
      rect.appendChild(tip);
      c.svg.appendChild(rect);
      if (labelled && x1 - x0 >= 40) {
        axisText(c.svg, x0 + 4, height - m.b - 5, x1 - x0 >= 170 ? D.backfill[r.code] : 'backfilled', 'start', 'band-label');
      }
    });
  }
  function historyLegend(runs) {
    var box = $('history-legend'), seen = [];
    box.textContent = '';
    runs.forEach(function (r) { if (seen.indexOf(r.code) < 0) { seen.push(r.code); } });
    seen.forEach(function (code) {
      var line = el('span', {'class': 'legend-line', 'data-source': code});
      line.appendChild(el('span', {'class': 'swatch band', 'aria-hidden': 'true'}));
      line.appendChild(el('b', null, ' ' + D.backfill[code]));
      line.appendChild(document.createTextNode(': ' + D.backfill_notes[code]));
      box.appendChild(line);
    });
    box.hidden = !seen.length;
  }
  function niceMax(m) {
    var steps = [5, 10, 20, 30, 40, 60, 80, 100];
    for (var i = 0; i < steps.length; i++) { if (m <= steps[i]) { return steps[i]; } }
    return 100;
  }
  var charts = [];
  function frame(box, height, margin) {
    var width = Math.max(box.clientWidth, 120);
    var s = svg('svg', {width: width, height: height, viewBox: '0 0 ' + width + ' ' + height, 'class': 'plot'});
    var n = Math.max(H.points, 2);
    var x = function (i) { return margin.l + i / (n - 1) * (width - margin.l - margin.r); };
    var cross = svg('line', {'class': 'cross', y1: margin.t, y2: height - margin.b, x1: -10, x2: -10});
    s.appendChild(cross);
    var chart = {svg: s, x: x, cross: cross, width: width, margin: margin};
    charts.push(chart);
    s.addEventListener('pointermove', function (ev) {
      var r = s.getBoundingClientRect(), px = ev.clientX - r.left;
      var i = Math.round((px - margin.l) / (width - margin.l - margin.r) * (n - 1));
      hover(Math.max(0, Math.min(H.points - 1, i)));
    });
    s.addEventListener('pointerleave', function () { hover(null); });
    return chart;
  }
  function axisText(s, x, y, text, anchor, cls) {
    var t = svg('text', {x: x, y: y, 'text-anchor': anchor || 'start', 'class': cls || 'axis'});
    t.textContent = text;
    s.appendChild(t);
  }
  function drawOverview(h, w) {
    var box = $('overview');
    var phone = box.clientWidth < 600, height = phone ? 180 : 230;
    var hasPrice = h.price && h.price.some(function (v) { return v !== null; });
    var m = {l: 40, r: hasPrice ? 62 : 12, t: 14, b: 22};
    var c = frame(box, height, m), s = c.svg, runs = bands(w, state.coin);
    drawBands(c, runs, height, true);
    var present = h.spread.filter(function (v) { return v !== null; });
    var top = niceMax(Math.max.apply(null, present.map(Math.abs).concat([1])));
    var y = function (v) { return m.t + (top - v) / (2 * top) * (height - m.t - m.b); };
    [top, top / 2, 0, -top / 2, -top].forEach(function (v) {
      s.appendChild(svg('line', {x1: m.l, x2: c.width - m.r, y1: y(v), y2: y(v), 'class': v === 0 ? 'zero' : 'grid'}));
      axisText(s, m.l - 4, y(v) + 4, (v > 0 ? '+' : v < 0 ? '−' : '') + Math.abs(v), 'end');
    });
    xTicks(H.points, c.width - m.l - m.r).forEach(function (i) {
      s.appendChild(svg('line', {x1: c.x(i), x2: c.x(i), y1: m.t, y2: height - m.b, 'class': 'grid'}));
      axisText(s, c.x(i), height - 6, tickLabel(i), 'middle');
    });
    s.appendChild(svg('path', {d: area(h.spread, c.x, y, 0, function (v) { return Math.max(v, 0); }), fill: hex(ramp(0.8)), 'class': 'area'}));
    s.appendChild(svg('path', {d: area(h.spread, c.x, y, 0, function (v) { return Math.min(v, 0); }), fill: hex(ramp(0.2)), 'class': 'area'}));
    s.appendChild(svg('path', {d: path(h.spread, c.x, y), 'class': 'spread'}));
    if (runs.length) { s.appendChild(svg('path', {d: bridges(h.spread, c.x, y, runs, h), 'class': 'spread bridge'})); }
    dots(s, h.spread, c.x, y, 2.5, 'dot spread-dot');
    h.closes.forEach(function (p) {
      if (p[1] !== null && p[0] < H.points) { s.appendChild(svg('circle', {cx: c.x(p[0]), cy: y(p[1]), r: 3.5, 'class': 'close'})); }
    });
    axisText(s, m.l + 4, m.t + 10, phone ? 'smart − retail, pts' : 'smart − retail, bias points (+ = smart money longer)', 'start', 'label');
    if (hasPrice) {
      var pv = h.price.filter(function (v) { return v !== null; });
      var lo = Math.min.apply(null, pv), hi = Math.max.apply(null, pv), pad = (hi - lo) * 0.08 || hi * 0.01 || 1;
      lo -= pad; hi += pad;
      var yp = function (v) { return m.t + (hi - v) / (hi - lo) * (height - m.t - m.b); };
      s.appendChild(svg('path', {d: path(h.price, c.x, yp), 'class': 'price'}));
      [hi - pad, (hi + lo) / 2, lo + pad].forEach(function (v) { axisText(s, c.width - m.r + 4, yp(v) + 4, price(v), 'start', 'axis price-axis'); });
      axisText(s, c.width - m.r - 4, m.t + 10, phone ? 'price →' : 'price (right axis)', 'end', 'label price-label');
    }
    box.appendChild(s);
  }
  function drawMultiples(h) {
    var box = $('multiples'), runs = bands(state.window, state.coin);
    [['size', 0, PNL_START], ['pnl', PNL_START, NC]].forEach(function (l) {
      var group = el('div', {'class': 'ladder-group'});
      group.appendChild(el('h3', null, D.ladders[l[0]]));
      var grid = el('div', {'class': 'panels'});
      group.appendChild(grid);
      box.appendChild(group);
      for (var k = l[1]; k < l[2]; k++) {
        var panel = el('figure', {'class': 'multiple', 'data-cohort': String(COHORTS[k].id)});
        var cap = el('figcaption');
        cap.appendChild(el('span', {'class': 'name'}, COHORTS[k].name));
        cap.appendChild(el('span', {'class': 'value', 'data-k': String(k)}));
        panel.appendChild(cap);
        grid.appendChild(panel);
        var height = 96, m = {l: 22, r: 4, t: 6, b: 14};
        var c = frame(panel, height, m), s = c.svg;
        drawBands(c, runs, height, false);
        var y = function (v) { return m.t + (1 - v) * (height - m.t - m.b); };
        [0, 0.5, 1].forEach(function (v) {
          s.appendChild(svg('line', {x1: m.l, x2: c.width - m.r, y1: y(v), y2: y(v), 'class': v === 0.5 ? 'neutral' : 'grid'}));
          axisText(s, m.l - 3, y(v) + 3, v === 0.5 ? '.5' : String(v), 'end');
        });
        xTicks(H.points, 600).forEach(function (i) {
          s.appendChild(svg('line', {x1: c.x(i), x2: c.x(i), y1: m.t, y2: height - m.b, 'class': 'grid'}));
        });
        for (var o = l[1]; o < l[2]; o++) {
          if (o !== k) {
            s.appendChild(svg('path', {d: path(h.bias[o], c.x, y), 'class': 'context'}));
            if (runs.length) { s.appendChild(svg('path', {d: bridges(h.bias[o], c.x, y, runs, h), 'class': 'context bridge'})); }
          }
        }
        s.appendChild(svg('path', {d: path(h.bias[k], c.x, y), 'class': 'own'}));
        if (runs.length) { s.appendChild(svg('path', {d: bridges(h.bias[k], c.x, y, runs, h), 'class': 'own bridge'})); }
        dots(s, h.bias[k], c.x, y, 1.8, 'dot own-dot');
        panel.appendChild(s);
      }
    });
  }
  function lastIndex(h) {
    for (var i = H.points - 1; i >= 0; i--) {
      if (h.spread[i] !== null || h.bias.some(function (b) { return b[i] !== null; })) { return i; }
    }
    return -1;
  }
  function firstIndex(h) {
    for (var i = 0; i < H.points; i++) {
      if (h.spread[i] !== null || h.bias.some(function (b) { return b[i] !== null; })) { return i; }
    }
    return -1;
  }
  function hover(i) {
    state.hover = i;
    var h = seriesOf(state.window, state.coin), at = i === null ? lastIndex(h) : i;
    charts.forEach(function (c) {
      var x = i === null ? -10 : c.x(i);
      c.cross.setAttribute('x1', x); c.cross.setAttribute('x2', x);
    });
    Array.prototype.forEach.call(document.querySelectorAll('#multiples .value'), function (v) {
      var b = at < 0 ? null : h.bias[+v.getAttribute('data-k')][at];
      v.textContent = b === null ? ' –' : ' ' + b.toFixed(2);
    });
    var out = $('readout');
    if (at < 0) { out.textContent = 'no snapshot of ' + state.coin + ' in window ' + state.window; return; }
    var t = timeAt(at), end = Math.min(t.getTime() + H.bucket * 60000, Date.parse(H.last.replace(' ', 'T') + ':00Z'));
    var parts = [(i === null ? 'latest: ' : '') + fmtTime(t) + '–' + fmtTime(new Date(end)).slice(11) + ' UTC'];
    parts.push('smart − retail ' + pp(h.spread[at], ' pts'));
    if (h.price) { parts.push('price ' + price(h.price[at])); }
    var band = bandAt(bands(state.window, state.coin), at);
    if (band) { parts.push((stateless(h, at) ? 'no state here · ' : '') + D.backfill[band.code]); }
    out.textContent = parts.join(' · ');
  }
  function renderHistory() {
    charts = [];
    $('overview').textContent = '';
    $('multiples').textContent = '';
    var h = seriesOf(state.window, state.coin), a = firstIndex(h), b = lastIndex(h);
    var title = state.coin + ' · window ' + state.window + ' · ';
    if (a < 0) {
      title += 'no snapshot held';
    } else {
      // The span of the snapshots actually held: the first bucket's start is never earlier
      // than the first snapshot, the last bucket's end never later than the last one.
      var t0 = new Date(Math.max(timeAt(a).getTime(), Date.parse(H.first.replace(' ', 'T') + ':00Z')));
      var t1 = new Date(Math.min(timeAt(b).getTime() + H.bucket * 60000, Date.parse(H.last.replace(' ', 'T') + ':00Z')));
      title += fmtTime(t0) + ' to ' + fmtTime(t1) + ' UTC (' + ((t1 - t0) / 86400000).toFixed(1) +
        ' days held, ' + bucketLabel() + ' closes: the last snapshot of each)';
    }
    $('history-title').textContent = title;
    historyLegend(bands(state.window, state.coin));
    drawOverview(h, state.window);
    drawMultiples(h);
    hover(state.hover);
  }

  // ------------------------------------------------------------------ divergence table
  function renderDivergence() {
    var t = $('divergence-table'), w = state.window, d = state.day, dv = divergence(w, d), bd = board(w, d);
    t.textContent = '';
    var marks = dayMarks(bd);
    $('divergence-title').textContent = '· window ' + w + ' · ' + D.days[d].label +
      (marks.length ? ' · ' + marks.join(' and ') + ' backfilled' : '');
    var head = el('tr');
    // The gap and its change first: on a phone they are what shows without scrolling.
    ['coin', 'smart − retail', 'vs previous close', 'smart bias', 'smart notional', 'retail bias', 'retail notional', 'open interest'].forEach(function (h) {
      head.appendChild(el('th', {scope: 'col'}, h));
    });
    var thead = el('thead'); thead.appendChild(head); t.appendChild(thead);
    var rows = [];
    D.coins.forEach(function (coin, i) { if (visible(coin) && dv.sp[i] !== null) { rows.push(i); } });
    rows.sort(function (a, b) { return Math.abs(dv.sp[b]) - Math.abs(dv.sp[a]) || a - b; });
    var tbody = el('tbody');
    rows.slice(0, 10).forEach(function (i) {
      var tr = el('tr', {'data-coin': D.coins[i]});
      tr.appendChild(el('th', {scope: 'row'}, D.coins[i]));
      [pp(dv.sp[i], ' pts'), pp(dv.dc[i], ' pts'), dv.sb[i] === null ? '–' : dv.sb[i].toFixed(2), usd(dv.sv[i]),
        dv.rb[i] === null ? '–' : dv.rb[i].toFixed(2), usd(dv.rv[i]), usd(bd.oi[i])].forEach(function (v) { tr.appendChild(el('td', null, v)); });
      tbody.appendChild(tr);
    });
    if (!rows.length) {
      var tr = el('tr'); tr.appendChild(el('td', {colspan: '8', 'class': 'empty'}, 'no coin where both smart money and retail hold positions'));
      tbody.appendChild(tr);
    }
    t.appendChild(tbody);
  }

  // ------------------------------------------------------------------ state and controls
  function setHash() {
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, '', '#window=' + state.window + '&coin=' + encodeURIComponent(state.coin) + '&day=' + D.days[state.day].day);
    }
  }
  function setCoin(coin) {
    state.coin = coin; $('coin').value = coin; state.hover = null;
    document.body.setAttribute('data-coin', coin);
    renderHistory(); setHash();
  }
  function render() {
    document.body.setAttribute('data-window', state.window);
    document.body.setAttribute('data-day', D.days[state.day].day);
    document.body.setAttribute('data-coin', state.coin);
    Array.prototype.forEach.call(document.querySelectorAll('#window-buttons button'), function (b) {
      b.setAttribute('aria-pressed', String(b.getAttribute('data-show') === state.window));
    });
    $('day').value = String(state.day);
    var bd = board(state.window, state.day), marks = dayMarks(bd);
    $('day-label').textContent = D.days[state.day].label + (backfilled(bd.cs) ? ' · backfilled' : '');
    $('board-title').textContent = '· window ' + state.window + ' · ' + D.days[state.day].board;
    $('change-title').textContent = '· window ' + state.window + ' · ' + D.days[state.day].change;
    badge('board-source', backfilled(bd.bs) ? D.backfill[bd.bs] : '');
    badge('change-source', marks.length ? (marks.length === 2 ? 'D and D-1' : marks[0]) + ' ' +
      D.backfill[backfilled(bd.cs) ? bd.cs : bd.ps] : '');
    renderBoard('bias');
    renderBoard('change');
    renderDivergence();
  }
  function fromHash() {
    var q = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      var p = kv.split('='); if (p.length === 2) { q[p[0]] = decodeURIComponent(p[1]); }
    });
    if (q.window && D.windows.indexOf(q.window) >= 0) { state.window = q.window; }
    if (q.coin && D.coins.indexOf(q.coin) >= 0) { state.coin = q.coin; $('coin').value = q.coin; }
    var d = D.days.findIndex(function (x) { return x.day === q.day; });
    if (d >= 0) { state.day = d; }
  }
  function setup() {
    var notes = $('notes');
    Object.keys(D.notes).forEach(function (k) { notes.appendChild(el('span', {'class': 'note-line', 'data-note': k}, D.notes[k])); });
    D.windows.forEach(function (w) {
      var b = el('button', {type: 'button', 'data-show': w}, w);
      b.addEventListener('click', function () { state.window = w; state.hover = null; render(); renderHistory(); setHash(); });
      $('window-buttons').appendChild(b);
    });
    var day = $('day');
    day.max = String(D.days.length - 1);
    day.disabled = D.days.length < 2;
    day.addEventListener('input', function () { state.day = +day.value; render(); setHash(); });
    $('filter').addEventListener('input', function () { state.filter = this.value.trim().toLowerCase(); render(); });
    $('min-usd').addEventListener('change', function () { state.minUsd = +this.value; render(); });
    if (D.flow) {
      $('split-control').hidden = false;
      $('second-line').addEventListener('change', function () { state.second = this.value; render(); });
    }
    var pick = $('coin');
    D.coins.forEach(function (c) { pick.appendChild(el('option', {value: c}, c)); });
    pick.value = state.coin;
    pick.addEventListener('change', function () { setCoin(this.value); });
    legend('bias-legend', 'bias');
    legend('change-legend', 'change');
    var wide = window.innerWidth;
    window.addEventListener('scroll', queueStick, {passive: true});
    window.addEventListener('resize', function () {
      queueStick();
      if (window.innerWidth !== wide) { wide = window.innerWidth; renderHistory(); }
    });
    window.addEventListener('hashchange', function () { fromHash(); render(); renderHistory(); });
    fromHash();
    render();
    renderHistory();
  }
  setup();
})();
