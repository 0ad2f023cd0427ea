//! SVG pages: per policy, instances, running tasks and waiting jobs over
//! the day, and the metric the policy scales on ([`svg`]); per policy,
//! launches a second against AWS's rate limits ([`launches_svg`]).

use plotters::prelude::*;

use crate::report::Outcome;

/// The page for `outcomes`, titled `title`.
pub fn svg(outcomes: &[Outcome], title: &str) -> Result<String, String> {
    let rows = outcomes.len().max(1);
    let (width, height) = (1400u32, 60 + 230 * rows as u32);
    let mut page = String::new();
    draw(&mut page, (width, height), outcomes, title).map_err(|e| e.to_string())?;
    Ok(page)
}

type Result2<T> = Result<T, Box<dyn std::error::Error>>;

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Fills the page white and writes `title` across its top; the rest.
fn titled<'a>(root: &Area<'a>, title: &str) -> Result2<Area<'a>> {
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(50);
    head.draw_text(
        title,
        &("sans-serif", 22).into_font().color(&BLACK),
        (12, 14),
    )?;
    Ok(body)
}

/// A series of the left-hand chart: its label, colour and value.
type Line = (&'static str, RGBColor, fn(&crate::report::Sample) -> u32);

fn draw(page: &mut String, size: (u32, u32), outcomes: &[Outcome], title: &str) -> Result2<()> {
    let root = SVGBackend::with_string(page, size).into_drawing_area();
    let body = titled(&root, title)?;
    let panels = body.split_evenly((outcomes.len().max(1), 2));
    for (k, o) in outcomes.iter().enumerate() {
        // At most about 720 points a line: a day's minutes, every other.
        let step = o.series.len().div_ceil(720).max(1);
        let series: Vec<&crate::report::Sample> = o.series.iter().step_by(step).collect();
        let hours = o.series.last().map_or(24.0, |s| s.t_s / 3600.0).max(1.0);
        let counts = o.series.iter().map(|s| {
            s.instances
                .max(s.ec2_tasks)
                .max(s.fargate_tasks)
                .max(s.lambda_tasks)
                .max(s.waiting)
        });
        let top = f64::from(counts.max().unwrap_or(1).max(1)) * 1.1;
        let name = match o.always_on_instances {
            Some(n) => format!("{} ({n} instances)", o.policy),
            None => o.policy.clone(),
        };
        let mut chart = ChartBuilder::on(&panels[2 * k])
            .caption(
                format!("{name}: ${:.2}, wait p95 {:.0} s", o.cost_usd, o.wait_p95_s),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..hours, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("hour")
            .max_light_lines(2)
            .draw()?;
        let lines: [Line; 5] = [
            ("instances", BLACK, |s| s.instances),
            ("EC2 tasks", BLUE, |s| s.ec2_tasks),
            ("Fargate tasks", RED, |s| s.fargate_tasks),
            ("Lambda jobs", GREEN, |s| s.lambda_tasks),
            ("waiting", MAGENTA, |s| s.waiting),
        ];
        for (label, color, value) in lines {
            chart
                .draw_series(LineSeries::new(
                    o.series
                        .iter()
                        .map(|s| (s.t_s / 3600.0, f64::from(value(s)))),
                    color.stroke_width(if label == "instances" { 2 } else { 1 }),
                ))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;

        let points: Vec<(f64, f64)> = series
            .iter()
            .filter_map(|s| s.metric.map(|m| (s.t_s / 3600.0, m)))
            .collect();
        let metric_top = points.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.1;
        let caption = if o.metric_name.is_empty() {
            format!("{name}: no scaling metric")
        } else {
            format!("{name}: {}", o.metric_name)
        };
        let mut chart = ChartBuilder::on(&panels[2 * k + 1])
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..hours, 0f64..metric_top)?;
        chart
            .configure_mesh()
            .x_desc("hour")
            .max_light_lines(2)
            .draw()?;
        chart.draw_series(LineSeries::new(points, CYAN.stroke_width(1)))?;
    }
    root.present()?;
    Ok(())
}

/// The launches a second of each policy that makes its own calls, on ECS
/// and on Lambda, against the sustained limits: RunTask's 20 a second and
/// Lambda's 100 new environments a second; the floor and the last launch
/// as vertical lines.
pub fn launches_svg(outcomes: &[Outcome], title: &str) -> Result<String, String> {
    let paced: Vec<&Outcome> = outcomes.iter().filter(|o| o.pace.is_some()).collect();
    let rows = paced.len().max(1);
    let (width, height) = (1200u32, 60 + 260 * rows as u32);
    let mut page = String::new();
    draw_launches(&mut page, (width, height), &paced, title).map_err(|e| e.to_string())?;
    Ok(page)
}

fn draw_launches(
    page: &mut String,
    size: (u32, u32),
    outcomes: &[&Outcome],
    title: &str,
) -> Result2<()> {
    use crate::figures as f;
    let root = SVGBackend::with_string(page, size).into_drawing_area();
    let body = titled(&root, title)?;
    let panels = body.split_evenly((outcomes.len().max(1), 1));
    let run_task = f::RUN_TASK_PER_SECOND.value;
    let environments = f::LAMBDA_NEW_ENVIRONMENTS_PER_10_SECONDS.value / 10.0;
    for (k, o) in outcomes.iter().enumerate() {
        let Some(p) = &o.pace else { continue };
        let seconds = (p.ecs_per_s.len() as f64)
            .max(p.floor_s)
            .max(p.launched_by_s)
            * 1.05
            + 1.0;
        let peak = p
            .ecs_per_s
            .iter()
            .chain(&p.lambda_per_s)
            .copied()
            .max()
            .unwrap_or(0);
        let top = (f64::from(peak).max(environments) * 1.1).max(1.0);
        let mut chart = ChartBuilder::on(&panels[k])
            .caption(
                format!(
                    "{}: last launch {:.0} s, floor {:.0} s ({:.2}x); {} throttled calls",
                    o.policy,
                    p.launched_by_s,
                    p.floor_s,
                    p.over_floor(),
                    p.throttled_calls
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..seconds, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("seconds from the first submission")
            .y_desc("launches a second")
            .max_light_lines(2)
            .draw()?;
        let per_second = |v: &[u32]| -> Vec<(f64, f64)> {
            v.iter()
                .enumerate()
                .map(|(s, n)| (s as f64, f64::from(*n)))
                .collect()
        };
        chart
            .draw_series(LineSeries::new(
                per_second(&p.ecs_per_s),
                BLUE.stroke_width(1),
            ))?
            .label("ECS launches (RunTask)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                per_second(&p.lambda_per_s),
                GREEN.stroke_width(1),
            ))?
            .label("Lambda starts")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], GREEN));
        let dashed = |y: f64, color: RGBColor| {
            DashedLineSeries::new([(0.0, y), (seconds, y)], 6, 4, color.stroke_width(1))
        };
        chart
            .draw_series(dashed(run_task, RED))?
            .label("RunTask limit, 20/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart
            .draw_series(dashed(environments, MAGENTA))?
            .label("Lambda new environments, 100/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], MAGENTA));
        for (x, color, label) in [
            (p.floor_s, BLACK, "floor"),
            (p.launched_by_s, CYAN, "last launch"),
        ] {
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, top)], color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
