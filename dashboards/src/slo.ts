// The SLOs of docs/slo.md: their SLIs against the objectives, and each SLO's error-budget burn
// from the recording rules (qrscan:http_request_slow_ratio:*, qrscan:http_request_error_ratio:*,
// qrscan:scan_event_late_ratio:*; monitoring/prometheus/rules/) against the multi-window alerts'
// burn-rate thresholds.
import { newDashboard, rate, row, shareUnder, stat, timeseries } from "./panels.ts";

const SCANS = 'route="/v1/scans"';
/** The latency SLO's error budget: 5% of requests may take longer than 400 ms. */
const LATENCY_BUDGET = 0.05;
/** The availability SLO's: 0.5% of valid requests may get a 5xx. */
const AVAILABILITY_BUDGET = 0.005;
/** The freshness SLO's: 5% of events may become visible later than 1 s. */
const FRESHNESS_BUDGET = 0.05;

const windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"] as const;

const fiveXxRatio = (range: string) =>
  `sum(rate(http_requests_total{${SCANS}, status=~"5.."}[${range}])) / sum(rate(http_requests_total{${SCANS}, status!~"4.."}[${range}]))`;
const lateRatio = (range: string) =>
  `1 - sum(rate(scan_event_freshness_seconds_bucket{le="1"}[${range}])) / sum(rate(scan_event_freshness_seconds_count[${range}]))`;

export function sloDashboard() {
  return newDashboard(
    "qrscan-slo",
    "qrscan-ingest / SLOs",
    "The SLOs of docs/slo.md (availability 99.5%, latency 95% within 400 ms, freshness 95% within 1 s): SLIs, error budget left over 30 days, burn rates against the alerts' thresholds.",
  )
    .withRow(row("Error budget left (30 days)"))
    .withPanel(
      stat({
        title: "Availability budget left",
        description: "1 - (5xx share of valid POST /v1/scans over 30 days) / 0.5%.",
        unit: "percentunit",
        width: 8,
        queries: [{ expr: `1 - (${fiveXxRatio("30d")}) / ${AVAILABILITY_BUDGET}`, legend: "availability budget left" }],
      }),
    )
    .withPanel(
      stat({
        title: "Latency budget left",
        description: "1 - (share of POST /v1/scans slower than 400 ms over 30 days) / 5%.",
        unit: "percentunit",
        width: 8,
        queries: [
          {
            expr: `1 - (1 - sum(rate(http_request_duration_seconds_bucket{${SCANS}, le="0.4"}[30d])) / sum(rate(http_request_duration_seconds_count{${SCANS}}[30d]))) / ${LATENCY_BUDGET}`,
            legend: "latency budget left",
          },
        ],
      }),
    )
    .withPanel(
      stat({
        title: "Freshness budget left",
        description: "1 - (share of events visible later than 1 s over 30 days) / 5%.",
        unit: "percentunit",
        width: 8,
        queries: [{ expr: `1 - (${lateRatio("30d")}) / ${FRESHNESS_BUDGET}`, legend: "freshness budget left" }],
      }),
    )
    .withRow(row("Latency SLO: 95% of POST /v1/scans within 400 ms"))
    .withPanel(
      timeseries({
        title: "Latency budget burn rate",
        description:
          "Slow ratio (qrscan:http_request_slow_ratio:rate<window>, the recording rules) / 5%. 1 spends the 30-day budget in 30 days. Alerts: 14.4 over 1h and 5m or 6 over 6h and 30m pages (EdgeLatencyBudgetBurnFast); 3 over 1d and 2h or 1 over 3d and 6h opens a ticket (EdgeLatencyBudgetBurnSlow).",
        unit: "short",
        thresholdLines: [1, 3, 6, 14.4],
        queries: windows.map((w) => ({
          expr: `qrscan:http_request_slow_ratio:rate${w} / ${LATENCY_BUDGET}`,
          legend: `burn rate ${w}`,
        })),
      }),
    )
    .withPanel(
      timeseries({
        title: "Share of scan requests within 400 ms",
        description:
          "The latency SLI, from the le=0.4 bucket of http_request_duration_seconds. Objective: 95% (dashed).",
        unit: "percentunit",
        max: 1,
        thresholdLines: [0.95],
        queries: [{ expr: shareUnder("http_request_duration_seconds", "0.4", SCANS), legend: "within 400 ms" }],
      }),
    )
    .withRow(row("Availability SLO: 99.5% of valid POST /v1/scans not 5xx"))
    .withPanel(
      timeseries({
        title: "Availability burn rate",
        description:
          "5xx share of POST /v1/scans answers that are not 4xx (qrscan:http_request_error_ratio:rate<window>, the recording rules) / 0.5%. Alerts: 14.4 over 1h and 5m or 6 over 6h and 30m pages (EdgeAvailabilityBudgetBurnFast); 3 over 1d and 2h or 1 over 3d and 6h opens a ticket (EdgeAvailabilityBudgetBurnSlow).",
        unit: "short",
        thresholdLines: [1, 3, 6, 14.4],
        queries: windows.map((w) => ({
          expr: `qrscan:http_request_error_ratio:rate${w} / ${AVAILABILITY_BUDGET}`,
          legend: `burn rate ${w}`,
        })),
      }),
    )
    .withPanel(
      timeseries({
        title: "Scan answers/s: valid and 5xx",
        description: "The availability SLI's terms: answers that are not 4xx, and the 5xx among them.",
        unit: "reqps",
        queries: [
          { expr: `sum(${rate(`http_requests_total{${SCANS}, status!~"4.."}`)})`, legend: "valid (not 4xx)" },
          { expr: `sum(${rate(`http_requests_total{${SCANS}, status=~"5.."}`)})`, legend: "5xx" },
        ],
      }),
    )
    .withRow(row("Freshness SLO: 95% of events visible within 1 s"))
    .withPanel(
      timeseries({
        title: "Freshness burn rate",
        description:
          "Share of events visible later than 1 s (qrscan:scan_event_late_ratio:rate<window>, the recording rules) / 5%. Alerts: 14.4 over 1h and 5m or 6 over 6h and 30m pages (FreshnessBudgetBurnFast); 3 over 1d and 2h or 1 over 3d and 6h opens a ticket (FreshnessBudgetBurnSlow).",
        unit: "short",
        thresholdLines: [1, 3, 6, 14.4],
        queries: windows.map((w) => ({
          expr: `qrscan:scan_event_late_ratio:rate${w} / ${FRESHNESS_BUDGET}`,
          legend: `burn rate ${w}`,
        })),
      }),
    )
    .withPanel(
      timeseries({
        title: "Share of events visible within 1 s",
        description:
          "The freshness SLI, from the le=1 bucket of scan_event_freshness_seconds. Objective: 95% (dashed).",
        unit: "percentunit",
        max: 1,
        thresholdLines: [0.95],
        queries: [{ expr: shareUnder("scan_event_freshness_seconds", "1"), legend: "within 1 s" }],
      }),
    );
}
