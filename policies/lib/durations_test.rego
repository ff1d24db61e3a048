package sealgate.lib.durations_test

import rego.v1

import data.sealgate.lib.durations

test_seconds if durations.human(45) == "45 s"

test_zero if durations.human(0) == "0 s"

test_minutes_and_seconds if durations.human(303) == "5 min 3 s"

test_whole_minutes if durations.human(120) == "2 min"

test_hours_and_minutes if durations.human(11520) == "3 h 12 min"

test_one_day if durations.human(86400) == "1 day"

test_days_and_hours if durations.human(187200) == "2 days 4 h"

test_a_week if durations.human(604800) == "7 days"

test_years_and_days if durations.human(137701515) == "4 years 133 days"

test_one_year_one_day if durations.human(31622400) == "1 year 1 day"

test_fractions_are_cut if durations.human(59.9) == "59 s"
