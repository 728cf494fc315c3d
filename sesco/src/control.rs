//! Control ports: application processes register, receive their set-point, report QoS.

use std::sync::Arc;

use sesco_proto::SessionId;
use sesco_proto::control::{QosReport, SetPointDirection};
use sesco_proto::event::EventKind;
use sesco_proto::peer::Peer;

use crate::coordinator::Coordinator;
use crate::limits;
use crate::session::process_reservation;
use sesco_proto::{ErrorCode, ErrorReply};

impl Coordinator {
    /// A process proved membership of its session (step 8): remember its control port
    /// and send it the session's current set-point (step 9).
    pub fn register_control(self: &Arc<Self>, session: SessionId, process: u32, peer: Peer) {
        let previous = self.state().controls.insert((session, process), peer);
        if let Some(old) = previous {
            tokio::spawn(async move { old.close(None).await });
        }
        self.emit(
            Some(session),
            None,
            EventKind::ControlPortRegistered { process },
        );
        let this = self.clone();
        tokio::spawn(async move {
            // After the changes already under way on this session (only this session's:
            // no lock is held), so set-points arrive in order.
            this.sequencer.settled(session).await;
            let Some(record) = this.state().sessions.get(&session).cloned() else {
                return;
            };
            let reservations: Vec<_> = (0..record.processes.len())
                .map(|i| process_reservation(&record.variant, i, &record.setpoint))
                .collect();
            this.notify_setpoint(
                session,
                &record.variant,
                &record.setpoint,
                record.setpoint_sequence,
                &reservations,
                SetPointDirection::Initial,
                Some(process),
            )
            .await;
        });
    }

    /// The process's control port closed.
    pub fn control_disconnected(&self, session: SessionId, process: u32, peer: &Peer) {
        let mut state = self.state();
        if state
            .controls
            .get(&(session, process))
            .is_some_and(|p| p.is_closed() && peer.is_closed())
        {
            state.controls.remove(&(session, process));
        }
    }

    /// The application reports the QoS it achieves. Kept with the process (it is a
    /// measurement, not a change, so it is not an event).
    pub fn report_qos(
        &self,
        session: SessionId,
        process: u32,
        report: QosReport,
    ) -> Result<(), ErrorReply> {
        if report.achieved.len() > limits::MAX_QOS_ENTRIES {
            return Err(ErrorReply::new(
                ErrorCode::Invalid,
                format!(
                    "a QoS report holds at most {} entries",
                    limits::MAX_QOS_ENTRIES
                ),
            ));
        }
        for (name, value) in &report.achieved {
            limits::check_len("a QoS dimension's name", name, limits::MAX_NAME)?;
            if !value.is_finite() {
                return Err(ErrorReply::new(
                    ErrorCode::Invalid,
                    format!("the achieved {name} is not a finite number"),
                ));
            }
        }
        let mut state = self.state();
        if let Some(p) = state
            .sessions
            .get_mut(&session)
            .and_then(|s| s.processes.get_mut(process as usize))
        {
            p.achieved = report.achieved;
        }
        Ok(())
    }
}
