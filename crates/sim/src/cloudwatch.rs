//! CloudWatch metric alarms, as they evaluate one datapoint a period.
//!
//! An alarm is in ALARM when at least `datapoints_to_alarm` of its last
//! `evaluation_periods` datapoints breach the threshold. Missing datapoints
//! are treated as the alarm says (CloudWatch user guide, "Configuring how
//! CloudWatch alarms treat missing data"). An alarm that acts on Auto
//! Scaling invokes its action every period it stays in ALARM, not only on
//! the change (CloudWatch user guide, "Alarm actions": "Except for Auto
//! Scaling actions, the actions happen only on state transitions").

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingData {
    /// Missing datapoints are left out; with none at all the alarm has
    /// insufficient data.
    Missing,
    NotBreaching,
    Breaching,
    /// The alarm keeps its state through missing datapoints.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub name: &'static str,
    pub comparison: Comparison,
    pub threshold: f64,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub missing: MissingData,
    pub state: AlarmState,
    /// The newest datapoints, newest last; `None` where none arrived.
    window: VecDeque<Option<f64>>,
}

impl Alarm {
    /// An alarm that needs `m` of the last `n` datapoints breaching.
    pub fn new(
        name: &'static str,
        comparison: Comparison,
        threshold: f64,
        m_of_n: (usize, usize),
        missing: MissingData,
    ) -> Self {
        let (m, n) = m_of_n;
        Self {
            name,
            comparison,
            threshold,
            evaluation_periods: n.max(1),
            datapoints_to_alarm: m.clamp(1, n.max(1)),
            missing,
            state: AlarmState::InsufficientData,
            window: VecDeque::new(),
        }
    }

    fn breaches(&self, v: f64) -> bool {
        match self.comparison {
            Comparison::GreaterThan => v > self.threshold,
            Comparison::LessThan => v < self.threshold,
        }
    }

    /// Takes the period's datapoint (`None`: none arrived) and returns the
    /// state after it.
    pub fn evaluate(&mut self, datapoint: Option<f64>) -> AlarmState {
        self.window.push_back(datapoint);
        while self.window.len() > self.evaluation_periods {
            self.window.pop_front();
        }
        let (mut present, mut breaching) = (0, 0);
        for d in &self.window {
            let breach = match (d, self.missing) {
                (Some(v), _) => Some(self.breaches(*v)),
                (None, MissingData::NotBreaching) => Some(false),
                (None, MissingData::Breaching) => Some(true),
                (None, MissingData::Missing | MissingData::Ignore) => None,
            };
            if let Some(b) = breach {
                present += 1;
                breaching += usize::from(b);
            }
        }
        self.state = if breaching >= self.datapoints_to_alarm {
            AlarmState::Alarm
        } else if present == 0 {
            match self.missing {
                MissingData::Ignore => self.state,
                _ => AlarmState::InsufficientData,
            }
        } else if datapoint.is_none() && self.missing == MissingData::Ignore {
            self.state
        } else {
            AlarmState::Ok
        };
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(alarm: &mut Alarm, points: &[Option<f64>]) -> Vec<AlarmState> {
        points.iter().map(|p| alarm.evaluate(*p)).collect()
    }

    use AlarmState::{Alarm as A, InsufficientData as I, Ok as O};

    /// template.yaml's SchedulableContainersLow: below 1, 1 of 1, missing
    /// data treated as missing.
    #[test]
    fn the_scale_out_alarm_fires_on_one_low_minute() {
        let mut low = Alarm::new(
            "low",
            Comparison::LessThan,
            1.0,
            (1, 1),
            MissingData::Missing,
        );
        assert_eq!(
            run(
                &mut low,
                &[None, Some(0.0), Some(0.0), Some(1.0), None, Some(0.0)]
            ),
            [I, A, A, O, I, A]
        );
    }

    /// template.yaml's SchedulableContainersHigh: above the threshold for
    /// 15 of 15 minutes, missing data not breaching.
    #[test]
    fn the_scale_in_alarm_needs_fifteen_high_minutes_in_a_row() {
        let mut high = Alarm::new(
            "high",
            Comparison::GreaterThan,
            2.0,
            (15, 15),
            MissingData::NotBreaching,
        );
        let mut points = vec![Some(3.0); 14];
        points.push(None); // a missing minute is not breaching
        points.extend([Some(3.0); 14]);
        let states = run(&mut high, &points);
        assert!(states.iter().all(|s| *s == O), "{states:?}");
        assert_eq!(high.evaluate(Some(3.0)), A);
        assert_eq!(high.evaluate(Some(2.0)), O, "2 is not above 2");
    }

    #[test]
    fn m_of_n_counts_breaches_in_the_window_only() {
        let mut a = Alarm::new(
            "a",
            Comparison::GreaterThan,
            75.0,
            (2, 3),
            MissingData::Missing,
        );
        assert_eq!(
            run(
                &mut a,
                &[
                    Some(80.0),
                    Some(10.0),
                    Some(90.0),
                    Some(95.0),
                    Some(10.0),
                    Some(10.0)
                ]
            ),
            [O, O, A, A, A, O]
        );
        let mut ignore = Alarm::new(
            "i",
            Comparison::GreaterThan,
            75.0,
            (1, 1),
            MissingData::Ignore,
        );
        assert_eq!(
            run(&mut ignore, &[None, Some(80.0), None, None, Some(1.0)]),
            [I, A, A, A, O]
        );
        let mut breaching = Alarm::new(
            "b",
            Comparison::GreaterThan,
            75.0,
            (2, 2),
            MissingData::Breaching,
        );
        assert_eq!(run(&mut breaching, &[None, None, Some(1.0)]), [O, A, O]);
    }
}
