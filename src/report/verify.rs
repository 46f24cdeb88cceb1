use super::Render;
use crate::verify::VerifyReport;

impl Render for VerifyReport {
    fn human(&self) -> String {
        format!("ok: {}\n", self.ok)
    }
}
