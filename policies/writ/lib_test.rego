# Unit tests for writ.lib. Run by `writ policy test` on regorus and on OPA.
package writ.lib_test

import data.writ.lib

test_valid_time_accepts_rfc3339 if {
	every t in [
		"2026-11-22T09:00:00Z",
		"2026-11-22T09:00:00.1Z",
		"2026-11-22T09:00:00.123456789Z",
		"2026-11-22T09:00:00+02:00",
		"2026-11-22T09:00:00-11:30",
		"2026-01-31T23:59:59Z",
		"1900-01-01T00:00:00Z",
		"2199-12-31T23:59:59Z",
	] {
		lib.valid_time(t)
	}
}

test_valid_time_rejects_what_either_engine_would_reject if {
	every t in [
		"2026-11-22t09:00:00z",
		"2026-11-22 09:00:00Z",
		"2026-11-22T09:00:60Z",
		"2026-11-22T24:00:00Z",
		"2026-11-22T09:60:00Z",
		"2026-13-01T09:00:00Z",
		"2026-00-10T09:00:00Z",
		"2026-11-00T09:00:00Z",
		"2026-11-31T09:00:00Z",
		"2026-11-22T09:00:00+24:00",
		"2026-11-22T09:00:00+02:60",
		"2026-11-22T09:00:00",
		"2026-11-22T09:00:00.Z",
		"2026-11-22T09:00:00.1234567890Z",
		"2026-11-22",
		"9999-01-01T00:00:00Z",
		"1677-01-01T00:00:00Z",
		" 2026-11-22T09:00:00Z",
		"",
	] {
		not lib.valid_time(t)
	}
}

test_valid_time_rejects_non_strings if {
	every v in [null, 1795341600, true, ["2026-11-22T09:00:00Z"], {"t": "2026-11-22T09:00:00Z"}] {
		not lib.valid_time(v)
	}
}

test_valid_time_knows_month_lengths if {
	lib.valid_time("2026-04-30T00:00:00Z")
	not lib.valid_time("2026-04-31T00:00:00Z")
	lib.valid_time("2026-12-31T00:00:00Z")
	lib.valid_time("2026-02-28T00:00:00Z")
	not lib.valid_time("2026-02-29T00:00:00Z")
	not lib.valid_time("2026-02-30T00:00:00Z")
}

test_leap_years if {
	lib.valid_time("2024-02-29T00:00:00Z")
	lib.valid_time("2000-02-29T00:00:00Z")
	not lib.valid_time("2100-02-29T00:00:00Z")
	not lib.valid_time("1900-02-29T00:00:00Z")
	lib.leap_year(2028)
	not lib.leap_year(2026)
}

test_time_ns if {
	lib.time_ns("1970-01-01T00:00:00Z") == 0
	lib.time_ns("2026-11-22T10:00:00+01:00") == lib.time_ns("2026-11-22T09:00:00Z")
	lib.time_ns("2026-11-22T09:00:00.000000001Z") - lib.time_ns("2026-11-22T09:00:00Z") == 1
}

test_time_ns_undefined_for_bad_input if {
	not lib.time_ns("2026-02-30T00:00:00Z")
	not lib.time_ns("tomorrow")
	not lib.time_ns(3)
}

test_two_digits if {
	lib.two_digits("2026-09-08", 5) == 9
	lib.two_digits("2026-09-08", 8) == 8
	lib.two_digits("2026-11-30", 8) == 30
}

test_non_empty_string if {
	lib.non_empty_string("a")
	not lib.non_empty_string("")
	not lib.non_empty_string(null)
	not lib.non_empty_string(["a"])
}

test_string_list if {
	lib.string_list([])
	lib.string_list(["a", "b"])
	not lib.string_list(["a", 1])
	not lib.string_list("a")
	not lib.string_list({"a"})
}
