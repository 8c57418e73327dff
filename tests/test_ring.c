#include <criterion/criterion.h>
Test(ring, placeholder) {}
