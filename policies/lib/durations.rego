# Durations for people: messages say "4 years 133 days" or "3 h 12 min", never
# "137701515 seconds"; the seconds themselves stay in the input and in the findings' fields.
package sealgate.lib.durations

import rego.v1

_minute := 60

_hour := 3600

_day := 86400

_year := 31536000 # 365 days

# human(seconds): the two largest units of a duration in seconds, the second left out when
# it is zero: "45 s", "5 min 3 s", "3 h 12 min", "2 days 4 h", "4 years 133 days".
human(seconds) := _two(floor(seconds / _year), "year", floor((floor(seconds) % _year) / _day), "day") if {
	seconds >= _year
} else := _two(floor(seconds / _day), "day", floor((floor(seconds) % _day) / _hour), "h") if {
	seconds >= _day
} else := _two(floor(seconds / _hour), "h", floor((floor(seconds) % _hour) / _minute), "min") if {
	seconds >= _hour
} else := _two(floor(seconds / _minute), "min", floor(seconds) % _minute, "s") if {
	seconds >= _minute
} else := _unit(floor(seconds), "s")

_two(n, first, 0, _) := _unit(n, first)

_two(n, first, m, second) := concat(" ", [_unit(n, first), _unit(m, second)]) if m != 0

# Words take a plural ("2 days"); symbols do not ("2 h").
_unit(n, word) := sprintf("%d %ss", [n, word]) if {
	word in {"year", "day"}
	n != 1
} else := sprintf("%d %s", [n, word])
