"""What operators read: the status report and page (from the day rollups), estimate and verify."""
