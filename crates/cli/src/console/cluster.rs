//! The console's cluster view: the instances and the group, the capacity
//! metric and the jobs waiting over the last hours, and the scaler's recent
//! decisions.

use berth_aws::EcsCluster;
use berth_aws::decisions::Decision;
use berth_aws::ecs::Observed;
use berth_aws::fleet::{Fleet, Group};
use berth_aws::metrics::{ClusterMetrics, History, JOBS_WAITING, SCHEDULABLE_CONTAINERS};
use berth_aws::store::PageOf;
use berth_core::JobStatus;
use plotters::prelude::*;

use crate::{Berth, CliError};

/// The hours of metrics the view shows.
pub const HOURS: i64 = 6;
/// One point of a metric a minute.
const PERIOD_S: i32 = 60;

/// What the cluster view shows.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster: String,
    pub instances: Vec<Observed>,
    /// The scaler's group, with a scaler (`None` without one; `Err` when it
    /// cannot be read).
    pub group: Option<Result<Group, String>>,
    /// Members of the group with no container instance yet: launching.
    pub launching: Vec<(String, String)>,
    /// Jobs waiting for capacity now (up to [`super::PAGE`] + 1 counted).
    pub waiting: usize,
    pub history: Result<Vec<History>, String>,
    pub decisions: Result<Vec<Decision>, String>,
    pub now_ms: i64,
}

/// Reads what the cluster view shows. The instances and the waiting jobs
/// must be read; the group, the metrics and the decisions are shown as
/// unreadable when they are.
pub async fn read(berth: &Berth) -> Result<ClusterView, CliError> {
    let now_ms = crate::now_ms();
    let ecs = EcsCluster::for_deployment(&berth.settings, &berth.clients);
    let (instances, _) = ecs.container_instances().await?;
    let group = match &berth.settings.scaling {
        Some(scaling) => Some(
            Fleet::new(berth.clients.autoscaling.clone(), &scaling.group)
                .group()
                .await
                .map_err(|e| e.to_string()),
        ),
        None => None,
    };
    let launching = match &group {
        Some(Ok(g)) => g
            .instances
            .iter()
            .filter(|m| !instances.iter().any(|o| o.ec2_instance_id == m.id))
            .map(|m| (m.id.clone(), m.instance_type.clone()))
            .collect(),
        _ => Vec::new(),
    };
    let waiting = berth
        .store()
        .page(
            JobStatus::WaitingForCapacity,
            PageOf::default(),
            super::PAGE + 1,
        )
        .await?
        .len();
    let history = ClusterMetrics::new(berth.clients.cloudwatch.clone(), &berth.settings.cluster)
        .history(
            &[SCHEDULABLE_CONTAINERS, JOBS_WAITING],
            now_ms - HOURS * 3_600_000,
            // To the end of this minute: a point put this second is in.
            now_ms + i64::from(PERIOD_S) * 1000,
            PERIOD_S,
        )
        .await
        .map_err(|e| e.to_string());
    let decisions = berth
        .store()
        .decisions()
        .await
        .map(|(d, _)| d)
        .map_err(|e| e.to_string());
    Ok(ClusterView {
        cluster: berth.settings.cluster.clone(),
        instances,
        group,
        launching,
        waiting,
        history,
        decisions,
        now_ms,
    })
}

/// The metrics over the last [`HOURS`] hours as an SVG chart, `now_ms` at
/// its right edge: one line per metric, steps between points a minute
/// apart, a gap where none was published (the cluster at rest).
pub fn chart(history: &[History], now_ms: i64) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, history, now_ms).map_err(|e| e.to_string())?;
    Ok(svg)
}

const COLOURS: [RGBColor; 2] = [RGBColor(11, 92, 173), RGBColor(180, 35, 24)];

fn draw(
    svg: &mut String,
    history: &[History],
    now_ms: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (900, 260)).into_drawing_area();
    root.fill(&WHITE)?;
    let hours = |t: i64| (t - now_ms) as f64 / 3_600_000.0;
    // Whole counts: one more than the most, each a label while they fit.
    let top = history
        .iter()
        .flat_map(|h| h.points.iter().map(|(_, v)| *v))
        .fold(1.0_f64, f64::max)
        .ceil()
        + 1.0;
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(-(HOURS as f64)..0.0, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("hours ago")
        .x_label_formatter(&|h| format!("{:.0}", -h))
        .y_labels((top as usize + 1).min(11))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (h, colour) in history.iter().zip(COLOURS) {
        // Runs of points a period apart, joined; a longer gap breaks the line.
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut last: Option<i64> = None;
        for (t, v) in &h.points {
            if last.is_none_or(|l| t - l > 2 * i64::from(PERIOD_S) * 1000) {
                runs.push(Vec::new());
            }
            if let Some(run) = runs.last_mut() {
                run.push((hours(*t), *v));
            }
            last = Some(*t);
        }
        let style = colour.stroke_width(2);
        let mut labelled = false;
        for run in runs {
            let drawn = chart.draw_series(LineSeries::new(run.clone(), style))?;
            if !labelled {
                drawn
                    .label(h.metric.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
                labelled = true;
            }
            chart.draw_series(run.into_iter().map(|p| Circle::new(p, 2, colour.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_draws_each_metric_it_has_and_breaks_at_gaps() {
        let now = 10 * 3_600_000;
        let minute = 60_000;
        let history = vec![
            History {
                metric: SCHEDULABLE_CONTAINERS.into(),
                // Two runs: an hour ago for three minutes, and now.
                points: vec![
                    (now - 60 * minute, 2.0),
                    (now - 59 * minute, 3.0),
                    (now - 58 * minute, 3.0),
                    (now - minute, 1.0),
                    (now, 1.0),
                ],
            },
            History {
                metric: JOBS_WAITING.into(),
                points: Vec::new(),
            },
        ];
        let svg = chart(&history, now).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains(SCHEDULABLE_CONTAINERS));
        assert!(
            !svg.contains(JOBS_WAITING),
            "a metric with no point has no line or label"
        );
        // Two lines for the two runs, plus the legend's sample, in the
        // first metric's colour; none in the second's.
        let line =
            |c: &str| format!(r#"<polyline fill="none" opacity="1" stroke="{c}" stroke-width="2""#);
        assert_eq!(svg.matches(&line("#0B5CAD")).count(), 2 + 1, "{svg}");
        assert_eq!(svg.matches(&line("#B42318")).count(), 0);
        assert_eq!(svg.matches("<circle").count(), 5);
    }
}
