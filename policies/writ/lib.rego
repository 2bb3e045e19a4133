# Writ: helpers shared by the Writ policies (writ.authz, writ.approval).
#
# Every helper is safe on any value: it is undefined (never an error) for a value of the
# wrong type, so policies stay defined for malformed input on both regorus and OPA
# (OPA's in-process engine raises on builtin errors instead of returning undefined).
package writ.lib

# RFC 3339 as both engines parse it the same way (regorus alone accepts a lowercase "t",
# a space or second 60; OPA does not), years 1900-2199 so nanoseconds fit in 64 bits.
rfc3339_pattern := `^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`

leap_year(y) if {
	y % 4 == 0
	y % 100 != 0
}

leap_year(y) if y % 400 == 0

days_in_month(_, m) := 31 if m in {1, 3, 5, 7, 8, 10, 12}

days_in_month(_, m) := 30 if m in {4, 6, 9, 11}

days_in_month(y, 2) := 29 if leap_year(y)

days_in_month(y, 2) := 28 if not leap_year(y)

# valid_time(t): t is a string that time.parse_rfc3339_ns accepts on both engines.
valid_time(t) if {
	is_string(t)
	regex.match(rfc3339_pattern, t)
	two_digits(t, 8) <= days_in_month(to_number(substring(t, 0, 4)), two_digits(t, 5))
}

# The number in s[i:i+2], digit by digit: regorus's to_number refuses a leading zero ("09").
two_digits(s, i) := (10 * to_number(substring(s, i, 1))) + to_number(substring(s, i + 1, 1))

non_empty_string(s) if {
	is_string(s)
	s != ""
}

string_list(xs) if {
	is_array(xs)
	every x in xs {
		is_string(x)
	}
}


# time_ns(t): nanoseconds since the epoch, only for a valid RFC 3339 string (else undefined).
time_ns(t) := time.parse_rfc3339_ns(t) if valid_time(t)
