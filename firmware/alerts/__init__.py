"""Zone alerts evaluated on the device (`rules.AlertEngine`), leaving as umbra.alert/1 records."""
