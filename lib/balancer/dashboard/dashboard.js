/**
 * The balancer dashboard's script: follows `/events` (one JSON state a message, see
 * `DashboardState` in `lib/balancer/dashboard.ts`), draws the servers' table and the share-of-picks chart
 * (uPlot, served by the balancer), and posts policy changes to `/policy`.
 *
 * A server that leaves the set stays on the page as "gone" for a minute, and its line in the
 * chart stops where it left.
 */
"use strict";
(() => {
  /** Chart points kept: two minutes at one message a second. */
  const HISTORY_POINTS = 120;
  /** How long a server that left stays in the table. */
  const GONE_KEEP_MS = 60_000;
  const COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
  ];

  const byId = (id) => document.getElementById(id);
  /** Chart x values (s since the epoch), one per interval. */
  const times = [];
  /** Every server seen, in the order it was first seen: its color, shares (%) and last row. */
  const servers = new Map();
  let lastWindowEnd = 0;
  let chart;
  let chartKey = "";
  let policyTouched = false;

  function track(address) {
    let entry = servers.get(address);
    if (!entry) {
      entry = {
        color: COLORS[servers.size % COLORS.length],
        shares: times.map(() => null),
        row: undefined,
        goneAt: undefined,
      };
      servers.set(address, entry);
    }
    return entry;
  }

  /** Takes one state: updates each server's row, and adds a chart point per new interval. */
  function record(state) {
    const present = new Set();
    for (const row of state.servers) {
      const entry = track(row.address);
      entry.row = row;
      entry.goneAt = undefined;
      present.add(row.address);
    }
    for (const [address, entry] of servers) {
      if (present.has(address)) continue;
      entry.goneAt ??= state.time;
      if (state.time - entry.goneAt > GONE_KEEP_MS) servers.delete(address);
    }
    if (state.window && state.window.end !== lastWindowEnd) {
      lastWindowEnd = state.window.end;
      times.push(state.window.end / 1000);
      for (const [address, entry] of servers) {
        const share = present.has(address) ? entry.row.share : null;
        entry.shares.push(share === null ? (present.has(address) ? 0 : null) : share * 100);
      }
      if (times.length > HISTORY_POINTS) {
        times.shift();
        for (const entry of servers.values()) entry.shares.shift();
      }
    }
  }

  function drawChart() {
    const element = byId("chart");
    const key = [...servers.keys()].join(",");
    const data = [times, ...[...servers.values()].map((entry) => entry.shares)];
    if (chart && key === chartKey) {
      chart.setData(data);
      return;
    }
    chart?.destroy();
    chartKey = key;
    chart = new uPlot(
      {
        width: element.clientWidth,
        height: 280,
        scales: { y: { range: [0, 100] } },
        legend: { live: false },
        axes: [{}, { label: "% of picks", values: (_u, ticks) => ticks.map((t) => `${t}%`) }],
        series: [
          {},
          ...[...servers].map(([address, entry]) => ({
            label: address,
            stroke: entry.color,
            width: 2,
          })),
        ],
      },
      data,
      element,
    );
  }

  function cell(textContent, className) {
    const td = document.createElement("td");
    td.textContent = textContent;
    if (className) td.className = className;
    return td;
  }

  const number = (value, digits = 0, unit = "") =>
    value === null || value === undefined ? "–" : `${value.toFixed(digits)}${unit}`;

  function drawTable() {
    const body = document.querySelector("#servers tbody");
    const rows = [];
    for (const [address, entry] of servers) {
      const row = entry.row;
      const gone = entry.goneAt !== undefined;
      const health = gone ? "gone" : row.healthy ? "healthy" : "unhealthy";
      const share = gone || row.share === null ? null : row.share * 100;
      const tr = document.createElement("tr");
      tr.dataset.address = address;
      tr.dataset.health = health;
      tr.dataset.share = share === null ? "" : share.toFixed(1);
      if (gone) tr.className = "gone";
      const name = cell(address);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = entry.color;
      name.prepend(swatch);
      const shareCell = cell("", "share");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${(share ?? 0) * 1.2}px`;
      bar.style.background = entry.color;
      shareCell.append(bar, number(share, 1, "%"));
      tr.append(
        name,
        cell(health, `health health-${health}`),
        cell(gone ? "–" : number(row.cpuLoad, 0, "%")),
        cell(gone ? "–" : number(row.inFlight)),
        cell(gone ? "–" : number(row.queueLength)),
        cell(gone || row.reportAgeMs === null ? "–" : number(row.reportAgeMs / 1000, 1, " s")),
        cell(gone ? "–" : number(row.weight, 2)),
        cell(row.probeRif === null ? "–" : number(row.probeRif)),
        cell(row.probeLatencyMs === null ? "–" : number(row.probeLatencyMs, 1, " ms")),
        shareCell,
      );
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function drawSummary(state) {
    byId("policy").textContent = state.policy;
    const healthy = state.servers.filter((s) => s.healthy).length;
    byId("counts").textContent = `${healthy} healthy of ${state.servers.length}`;
    byId("rate").textContent = state.window
      ? (state.window.picks / (state.window.ms / 1000)).toFixed(1)
      : "…";
    // xDS clients, when the balancer serves xDS; the last rejected update is the tooltip.
    byId("xds-summary").hidden = state.xds === null;
    if (state.xds !== null) {
      const { streams, nacks, lastNack } = state.xds;
      const xds = byId("xds");
      xds.textContent = `${streams} · ${nacks} NACK${nacks === 1 ? "" : "s"}`;
      xds.className = nacks > 0 ? "warn" : "";
      xds.title = lastNack
        ? `Last NACK, from ${lastNack.node} (${lastNack.typeUrl} version ${lastNack.version}): ` +
          lastNack.message
        : "";
    }
    const select = byId("policy-select");
    if (select.options.length !== state.policies.length) {
      select.replaceChildren(...state.policies.map((name) => new Option(name, name)));
    }
    if (!policyTouched) select.value = state.policy;
    byId("token-label").hidden = !state.tokenRequired;
  }

  function connect() {
    const badge = byId("connection");
    const events = new EventSource("events");
    events.onopen = () => {
      badge.textContent = "live";
      badge.className = "badge live";
    };
    events.onerror = () => {
      badge.textContent = "reconnecting";
      badge.className = "badge down";
    };
    events.onmessage = (event) => {
      const state = JSON.parse(event.data);
      record(state);
      drawSummary(state);
      drawTable();
      drawChart();
    };
  }

  async function submitPolicy(event) {
    event.preventDefault();
    const message = byId("policy-message");
    const headers = { "content-type": "application/json" };
    const token = byId("token").value.trim();
    if (token !== "") headers.authorization = `Bearer ${token}`;
    message.textContent = "…";
    message.className = "";
    try {
      const response = await fetch("policy", {
        method: "POST",
        headers,
        body: JSON.stringify({ policy: byId("policy-select").value }),
      });
      if (response.ok) {
        const { previous, policy } = await response.json();
        message.textContent = `Changed from ${previous} to ${policy}`;
        message.className = "ok";
        policyTouched = false;
      } else {
        message.textContent = `Refused (${response.status}): ${(await response.text()).trim()}`;
        message.className = "error";
      }
    } catch (error) {
      message.textContent = `Failed: ${error.message}`;
      message.className = "error";
    }
  }

  byId("policy-select").addEventListener("change", () => policyTouched = true);
  byId("policy-form").addEventListener("submit", submitPolicy);
  addEventListener(
    "resize",
    () => chart?.setSize({ width: byId("chart").clientWidth, height: 280 }),
  );
  connect();
})();
