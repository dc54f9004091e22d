"""Demographics, the private way: age band by gender histograms per zone and window, estimated on the device
(hal.agegender), noised and k-thresholded (release), opt-in ([demographics], config), never per person.
The frame-scope hook that feeds them is firmware.demographics.hook."""

from firmware.config.demographics import STREAM, DemographicsConfig
from firmware.demographics.bands import BANDS, GENDERS
from firmware.demographics.release import SCHEMA, DemographicWindow, release

__all__ = ["BANDS", "GENDERS", "SCHEMA", "STREAM", "DemographicWindow", "DemographicsConfig", "release"]
