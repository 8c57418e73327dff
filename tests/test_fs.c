#include <criterion/criterion.h>
Test(fs, placeholder) {}
